"""Repair: replace every missing or corrupt object with a good copy from a mirror.

A copy is good only if it decodes and hashes to the object's id, checked before anything of the primary is
touched. A damaged primary copy is moved aside to ``quarantine/`` (kept for a look, never overwritten in place),
then the good copy is written with the store's atomic put and read back. Each step is idempotent, so a repair
killed at any instant is finished by running it again: the quarantined copy is kept, and an object left missing
between "set aside" and "written" is simply missing, which the next run repairs from the same mirror.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelarc.archive.mirrors import fetch_good_copy, mirrors, open_mirror
from modelarc.errors import ObjectCorruptError, ObjectMissingError
from modelarc.registry import integrity as rows
from modelarc.registry import queries as q
from modelarc.storage import ObjectId
from modelarc.storage.store import object_key

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


@dataclass
class RepairReport:
    repaired: dict[str, str] = field(default_factory=dict)  # object id -> the mirror its copy came from
    quarantined: dict[str, str] = field(default_factory=dict)  # object id -> where its damaged copy now is
    unrepaired: dict[str, list[str]] = field(default_factory=dict)  # object id -> snapshots left broken
    broken_snapshots: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.unrepaired

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.__dict__}


def repair(archive: Archive, *, read_data: bool = False) -> RepairReport:
    """Repair what the last scrub found bad and every catalogued object missing from a listing of the store;
    ``read_data`` re-hashes every object first (a full scrub) instead of trusting the last one."""
    report = RepairReport()
    sources = [(m.name, open_mirror(archive, m.target)) for m in mirrors(archive)]
    with archive.lock(exclusive=False, purpose="repair"):
        suspects = _suspects(archive, read_data)
        report.checked = len(suspects)
        fixed: dict[str, str] = {}  # what each suspect is now, for the catalog
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        for oid in sorted(suspects):
            state = _state(archive, oid)
            if state == "ok":  # already fine (repaired by an earlier, interrupted run, or a false alarm)
                fixed[oid] = "ok"
                continue
            good = fetch_good_copy(sources, oid)
            if good is None:
                report.unrepaired[oid] = []
                fixed[oid] = state  # remembered, so the next repair (or a new mirror) tries it again
                continue
            mirror_name, blob = good
            if state == "corrupt":
                aside = archive.store.quarantine(ObjectId(oid), stamp)
                if aside is not None:
                    report.quarantined[oid] = aside
            archive.store.backend.put(object_key(ObjectId(oid)), blob)
            archive.store.sync()
            if (after := _state(archive, oid)) != "ok":  # read back: the write itself must have landed intact
                report.unrepaired[oid] = []
                fixed[oid] = after
                continue
            report.repaired[oid] = mirror_name
            fixed[oid] = "ok"
    with archive.catalog.session() as s:
        rows.record_checks(s, fixed)  # ok, or still corrupt/missing
        users = q.snapshots_using(s, report.unrepaired)
        for oid in report.unrepaired:
            report.unrepaired[oid] = sorted(sn.label for sn in users.get(oid, []))
        report.broken_snapshots = sorted({label for labels in report.unrepaired.values() for label in labels})
        q.audit(
            s,
            archive.settings.actor,
            "repair",
            "store",
            repaired=len(report.repaired),
            quarantined=len(report.quarantined),
            unrepaired=len(report.unrepaired),
        )
    return report


def _suspects(archive: Archive, read_data: bool) -> set[str]:
    with archive.catalog.session() as s:
        known_bad = set(rows.objects_found_bad(s))
        catalogued = set(rows.catalogued_sizes(s))
    present = set(archive.store.iter_ids())
    suspects = known_bad | (catalogued - present)
    if read_data:
        suspects |= {oid for oid in catalogued & present if _state(archive, oid) != "ok"}
    return suspects


def _state(archive: Archive, oid: str) -> str:
    try:
        archive.store.get(ObjectId(oid))
    except ObjectMissingError:
        return "missing"
    except ObjectCorruptError:
        return "corrupt"
    return "ok"
