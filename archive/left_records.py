"""The record a command stopped short of its commit left, and how the same command run again completes it.

A command that changes the catalog writes its record (store/records/, durable) before its transaction commits
(archive/records.py), so that a catalog lost after the commit can be rebuilt. Killed in between, it leaves a record
of a change the catalog lacks: ``fsck`` warns of it for good, and where the change may not happen twice (a second
grant to the same subject) a rebuild refuses the record the re-run writes and exits 5. Running the same command
again is what a user does after a kill; it then completes the change the left record states, with that record's
time, instead of writing a second one dated later.

A command notes in ``catalog_settings`` that it started (committed before its record is written) and clears the
note in the transaction that commits its change; only a run that finds an earlier note looks for left records, and
only among those named since that note: looking on every run would list and read every record of the store. A
record counts as this run's only when it states exactly what this run would record (its ``same`` test), its time
and the time in its name lie, in that order, between the earlier run's start and now, and the catalog does not hold
it already: anyone who can write the store can write records (docs/SECURITY.md), and a planted one must not choose
the reason, the actor or the time the catalog records, nor be named where a rebuild would refuse it (in the future)
or replay it before the change could have been made.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelarc.archive.records import (
    CatalogRecord,
    catalog_time,
    format_time,
    parse_time,
    read_record,
    read_record_bytes,
    record_keys,
    record_written,
)
from modelarc.errors import ModelarcError, RecordError
from modelarc.registry import written_records as written_rows
from modelarc.registry.catalog_settings import clear_setting, record_setting
from modelarc.registry.db import CatalogSession

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive

# catalog_settings.key holds 64 characters
_KEY_LENGTH = 64


def attempt_key(command: str, *names: str) -> str:
    """The ``catalog_settings`` key of a run of ``command`` on the thing ``names`` name (a model and a subject, a
    model and a tag): a digest, since names can be longer than the column."""
    digest = hashlib.sha256("\0".join(names).encode()).hexdigest()
    return f"{command}:{digest}"[:_KEY_LENGTH]


@dataclass(frozen=True)
class Attempt:
    """A run of a command that noted its start: ``since`` is when an earlier run of it that never committed started
    (None when there was none: then no record is looked for)."""

    key: str
    since: dt.datetime | None


@dataclass(frozen=True)
class LeftRecords:
    """Of the records an earlier run of this command may have left: the one that states exactly this run's change
    (``match``), and the keys of the others of the same thing (another reason or actor, dated outside that run)."""

    match: CatalogRecord | None = None
    others: tuple[str, ...] = ()

    def time(self) -> dt.datetime:
        """When this run's change is dated: the completed record's time, else now."""
        return self.match.at if self.match is not None else catalog_time()

    @property
    def completed(self) -> str | None:
        """The key of the record this run completed, if any."""
        return self.match.key if self.match is not None else None


def start_attempt(archive: Archive, key: str, *, fallback: dt.datetime) -> Attempt:
    """Note, committed at once, that a run under ``key`` started now; the earliest note is kept, so a record left
    by the first of several stopped runs is still found. ``fallback`` is where to look from when a note was garbled
    by hand (the thing's creation)."""
    mine = format_time(catalog_time())
    # two at once: the second reads the first's note (whose record, if any, is not left yet: no match is found)
    noted = record_setting(archive.catalog, key, mine)
    if noted == mine:
        return Attempt(key, None)
    try:
        return Attempt(key, parse_time(noted))
    except ValueError:
        return Attempt(key, fallback)


def find_left(
    archive: Archive,
    attempt: Attempt,
    kind: str,
    of_this: Callable[[dict[str, Any]], bool],
    same: Callable[[CatalogRecord], bool],
    held: Callable[[CatalogRecord], bool] = lambda _: False,
    changed_after: Callable[[dt.datetime], bool] = lambda _: False,
) -> LeftRecords:
    """The ``kind`` records named since ``attempt``'s earlier run started whose body ``of_this`` says are of the
    thing this run changes, split into the one this run completes and the others. A record the catalog holds
    (``held``: committed, by this command or another that notes no start) is neither.

    Only the last record of the thing may be completed, when ``same`` says it states exactly this run's change and
    the catalog holds no change of the thing after its time (``changed_after``): a rebuild replays records in name
    order, so a change committed after it (a mirror's policy sync, a push moving the tag) must stay the later one;
    adopting the earlier record would date this change before it, and the catalog and a rebuild would disagree. The
    caller holds the thing's lock (``registry.queries.lock_model``) so that no run in flight commits meanwhile."""
    if attempt.since is None:
        return LeftRecords()
    since, now = attempt.since, catalog_time()
    backend = archive.store.backend
    ours: list[tuple[CatalogRecord, bool]] = []  # of this thing, in name order, and whether the catalog holds it
    for key in sorted(k for k in record_keys(backend) if since <= (record_written(k) or dt.datetime.min) <= now):
        try:
            record = read_record(backend, key)
        except (RecordError, OSError, ModelarcError):
            continue  # named by fsck; not this run's
        try:
            if record.kind == kind and of_this(record.body):
                ours.append((record, held(record)))
        except (KeyError, TypeError, AttributeError):  # a garbled body: a rebuild refuses it, fsck names it
            continue
    match: CatalogRecord | None = None
    if ours and not ours[-1][1]:
        last = ours[-1][0]
        try:
            exact = same(last)
        except (KeyError, TypeError, AttributeError):
            exact = False
        if exact and since <= last.at <= last.written <= now and not changed_after(last.at):
            match = last
    others = tuple(r.key for r, committed in ours if not committed and r is not match)
    return LeftRecords(match, others)


def adopt(archive: Archive, s: CatalogSession, record: CatalogRecord) -> None:
    """Make ``record`` this run's, in its transaction: durable first (the run that wrote it may have been stopped
    between its put and its sync), as a record is before the change it records commits, and noted as this archive's."""
    backend = archive.store.backend
    backend.put(record.key, read_record_bytes(backend, record.key))
    backend.sync()
    written_rows.note_written(s, record.key)


def write_unless_left(archive: Archive, s: CatalogSession, left: LeftRecords, write: Callable[[], object]) -> None:
    """The change's record, in its transaction: the left one made this run's (``adopt``), or a new one (``write``)."""
    if left.match is not None:
        adopt(archive, s, left.match)
    else:
        write()


def finish_attempt(s: CatalogSession, attempt: Attempt) -> None:
    """Clear the note in the transaction that commits the change: no later run looks for records."""
    clear_setting(s, attempt.key)
