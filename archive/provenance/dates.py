"""Dates a snapshot's provenance may not state: any that is provably false on the day it is recorded.

A cutoff or release date after that day has not happened yet, and a release before the cutoff cannot have been
trained on data up to it; a pusher (or a remote's offer, or anything rewriting it on the way) stating one would be
recorded, shown and exported without comment. Refused where provenance enters an archive: a local push, a server
receiving a push, a puller receiving an offer. Never where it is replayed (a rebuild, an upgrade): what an archive
recorded before this rule stays as it was. An embargo is not a release date: ``access set --until`` (a future day
by design) is another field, untouched here.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re

from modelarc.errors import UsageError
from modelarc.registry.records import Provenance

# the day is UTC's; a pusher east of Greenwich is a day ahead of it for hours, so one day more is allowed
SLACK = dt.timedelta(days=1)


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_day(text: str) -> dt.date:
    """A ``YYYY-MM-DD`` date, exactly: ``date.fromisoformat`` also takes ``20990101`` and ISO week dates
    (``2099-W01-1`` is 2098-12-29), which no policy, record or offer states; ValueError otherwise."""
    if not _DAY.fullmatch(text):
        raise ValueError(f"not YYYY-MM-DD: {text[:40]!r}")
    return dt.date.fromisoformat(text)


def latest_stated_day(today: dt.date | None = None) -> dt.date:
    """The latest day a stated date may name: today (UTC) and one day of slack for time zones."""
    return (today or dt.datetime.now(dt.UTC).date()) + SLACK


def refuse_impossible_dates(provenance: Provenance, where: str, today: dt.date | None = None) -> None:
    """``UsageError`` naming the field for a cutoff or release date after ``latest_stated_day``, or a release date
    before the cutoff.

    A date is the first day of the period it was given as (``2024`` is 2024-01-01), so a period is refused only
    when all of it is impossible: a release date's precision is not recorded, so one on the first day of a year or
    month may stand for all of it (``--released 2024`` with ``--cutoff 2024-06`` is not provably false).
    """
    latest = latest_stated_day(today)
    for name, option, value in (
        ("cutoff", "cutoff", provenance.cutoff),
        ("release_date", "release date", provenance.release_date),
    ):
        if value is not None and value > latest:
            raise UsageError(
                f"{where}: {name}: {option} {value.isoformat()} is after today ({latest - SLACK} UTC): "
                "a date that has not come yet cannot be true"
            )
    cutoff, released = provenance.cutoff, provenance.release_date
    if cutoff is not None and released is not None and _last_day_it_may_mean(released) < cutoff:
        raise UsageError(
            f"{where}: release_date: release date {released.isoformat()} is before the training cutoff "
            f"{cutoff.isoformat()}: weights cannot be released before the data they were trained on ends"
        )


def _last_day_it_may_mean(day: dt.date) -> dt.date:
    """The last day of the longest period a first day may stand for: a year for January 1st, a month for a 1st."""
    if day.month == 1 and day.day == 1:
        return day.replace(month=12, day=31)
    if day.day == 1:
        return day.replace(day=calendar.monthrange(day.year, day.month)[1])
    return day
