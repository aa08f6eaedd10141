"""Turning user-facing search options (dates, "7B", REFs) into registry filters."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from modelarc.archive.repository import Archive, parse_cutoff
from modelarc.errors import UsageError
from modelarc.registry import snapshot_search as ss
from modelarc.registry.bounds import CATALOG_INT_MAX
from modelarc.registry.snapshot_search import SnapshotFilters, SnapshotSummary

# The filters themselves are listed in filters.py (SEARCH_FILTERS); this module turns their values into a query.

_COUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMbBtT]?)\s*$")
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}
MAX_COUNT = CATALOG_INT_MAX  # the catalog stores parameter counts as signed 64-bit integers
_MAX_COUNT_TEXT = 40  # longer is never a count we can store; refused before any conversion
# a free-text filter's most characters, as the server bounds its query parameters (api/limits.py MAX_TEXT): SQLite
# refuses a LIKE pattern over 50,000 bytes with an error that is no user's fault, and no name, architecture,
# dataset or license is anywhere near this long
MAX_FILTER_TEXT = 300


def parse_count(text: str) -> int:
    """``7B``, ``135M``, ``1.5K`` or a plain integer, from 0 to 2^63-1.

    Decimal, not float: float turns 20 digits into a rounded value and 400 digits into inf (OverflowError).
    """
    m = _COUNT.match(text or "") if len(text or "") <= _MAX_COUNT_TEXT else None
    if m is None:
        raise UsageError(
            f"invalid parameter count {(text or '')[:_MAX_COUNT_TEXT]!r}: use e.g. 135M, 7B or 1500000"
        )
    count = int(Decimal(m[1]) * _SCALE[m[2].lower()])
    if count > MAX_COUNT:
        raise UsageError(f"parameter count {text.strip()!r} is too large: at most {MAX_COUNT}")
    return count


def parse_day(text: str) -> dt.date:
    return parse_cutoff(text)[0]


def parse_as_of(text: str) -> dt.datetime:
    """End of the given day (or month/year), so ``--as-of 2024-05-01`` includes everything done that day."""
    start, precision = parse_cutoff(text)
    try:
        if precision == "year":
            end = dt.date(start.year + 1, 1, 1)
        elif precision == "month":
            end = dt.date(start.year + (start.month == 12), start.month % 12 + 1, 1)
        else:
            end = start + dt.timedelta(days=1)
    # the period ends after 9999-12-31, the last day a date can hold (the CLI's option and the server's parameter)
    except (ValueError, OverflowError):
        raise UsageError(f"as-of date {text!r} is out of range: the latest is 9999-12-30") from None
    return dt.datetime.combine(end, dt.time()) - dt.timedelta(microseconds=1)


def build_filters(
    archive: Archive,
    *,
    cutoff_before: str | None = None,
    cutoff_after: str | None = None,
    arch: str | None = None,
    min_params: str | None = None,
    max_params: str | None = None,
    trained_on: str | None = None,
    license: str | None = None,
    descendant_of: str | None = None,
    as_of: str | None = None,
    name: str | None = None,
    limit: int | None = 100,
    offset: int = 0,
) -> SnapshotFilters:
    for option, text in (("--name", name), ("--arch", arch), ("--trained-on", trained_on), ("--license", license)):
        if text is not None and len(text) > MAX_FILTER_TEXT:
            raise UsageError(f"{option} is {len(text):,} characters long; at most {MAX_FILTER_TEXT} are taken")
    before = parse_day(cutoff_before) if cutoff_before else None
    after = parse_day(cutoff_after) if cutoff_after else None
    least = parse_count(min_params) if min_params else None
    most = parse_count(max_params) if max_params else None
    # a range nothing can be in is a mistake (swapped bounds), not a search: "no snapshots match" would hide it
    if before is not None and after is not None and after >= before:
        raise UsageError(
            f"--cutoff-after {cutoff_after} is not earlier than --cutoff-before {cutoff_before}: "
            "no training cutoff can be both"
        )
    if least is not None and most is not None and least > most:
        raise UsageError(
            f"--min-params {min_params} is more than --max-params {max_params}: no parameter count can be both"
        )
    root = archive.resolve(descendant_of)[1].row_id if descendant_of else None
    return SnapshotFilters(
        cutoff_before=before,
        cutoff_after=after,
        arch=arch,
        min_params=least,
        max_params=most,
        trained_on=trained_on,
        license=license,
        descendant_of=root,
        as_of=parse_as_of(as_of) if as_of else None,
        name=name,
        limit=limit,
        offset=offset,
    )


def search(archive: Archive, filters: SnapshotFilters, *, order: str = "newest") -> list[SnapshotSummary]:
    with archive.catalog.session() as s:
        return ss.search(s, filters, order=order)
