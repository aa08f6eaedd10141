"""Scrub: re-read and re-hash objects, oldest-verified first, within a budget, and remember what was found.

Disks rot silently; an object read once a year is an object whose loss is found a year late. Bounded by bytes,
seconds and a rate, scrub can run from cron every night and cover the whole store over a period (ZFS scrub,
restic ``check --read-data-subset``). Each result is written to the catalog as it goes, so an interrupted scrub
keeps what it learned and the next one starts where the oldest checks are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelarc.archive.mirrors import MirrorCopy, is_remote_target, mirrors, open_mirrors, served_objects
from modelarc.errors import (
    DeltaBaseError,
    ModelarcError,
    ObjectCorruptError,
    ObjectMissingError,
    UnsupportedObjectError,
)
from modelarc.registry import integrity as rows
from modelarc.registry import queries as q
from modelarc.storage import ObjectId, ObjectStore

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive

Progress = Callable[[int], None]
FLUSH_EVERY = 200  # objects between catalog writes of the results


@dataclass(frozen=True)
class ScrubLimits:
    max_bytes: int | None = None
    max_seconds: float | None = None
    rate: float | None = None  # bytes per second at most


@dataclass
class ScrubReport:
    objects_checked: int = 0
    bytes_checked: int = 0
    corrupt: dict[str, list[str]] = field(default_factory=dict)  # object id -> snapshots that need it
    missing: dict[str, list[str]] = field(default_factory=dict)
    # object id -> snapshots that need it, for objects of a newer format than this modelarc reads: not damage, left
    # as they are (a newer modelarc checks them)
    unsupported: dict[str, list[str]] = field(default_factory=dict)
    # name -> {"missing"/"corrupt"/"unsupported": ids}
    mirrors: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # mirror name -> why it could not be read at all (a missing folder: an unmounted disk)
    unreachable: dict[str, str] = field(default_factory=dict)
    # mirror name -> objects it lacks that were archived after its last sync (all of them, never synced): behind,
    # not damaged; the next `mirror sync` copies them
    mirrors_behind: dict[str, int] = field(default_factory=dict)
    mirrors_never_synced: list[str] = field(default_factory=list)  # names; not stamped verified
    stopped_by: str = "done"  # done | max-bytes | max-seconds
    objects_total: int = 0
    objects_ever_verified: int = 0
    oldest_verified: str | None = None

    @property
    def damage_found(self) -> bool:
        return bool(
            self.corrupt
            or self.missing
            or any(ids for m in self.mirrors.values() for kind, ids in m.items() if kind != "unsupported")
        )

    @property
    def unsupported_found(self) -> bool:
        return bool(self.unsupported or any(m.get("unsupported") for m in self.mirrors.values()))

    @property
    def ok(self) -> bool:
        return not (self.damage_found or self.unreachable or self.unsupported_found)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, **self.__dict__}


def scrub(
    archive: Archive,
    limits: ScrubLimits = ScrubLimits(),
    *,
    with_mirrors: bool = False,
    progress: Progress | None = None,
) -> ScrubReport:
    report = ScrubReport()
    with archive.catalog.session() as s:
        order = rows.scrub_order(s)
    records = mirrors(archive) if with_mirrors else []
    others, report.unreachable = open_mirrors(archive, records)  # a missing one is counted, never made again
    # a served mirror is sent live snapshots only: objects only withdrawn ones need are not expected there. The
    # bases live snapshots' deltas need are there (a withdrawn parent's chunks too), kept as bases only, which the
    # mirror hands to no reader of those snapshots (403): they are checked through the deltas, which it decodes
    # against them, verified, for a reader who may not read the base
    served = {m.name for m in records if is_remote_target(m.target)}
    last_sync = {m.name: m.synced_at for m in records}
    report.mirrors_never_synced = sorted(name for name, at in last_sync.items() if at is None)
    live = served_objects(archive, bases=False) if served else {}
    for name, _store in others:
        report.mirrors[name] = {"missing": [], "corrupt": []}  # and "unsupported" once one is found
    found: dict[str, str] = {}  # results not yet written to the catalog
    bad: dict[str, str] = {}  # every corrupt, missing or unsupported primary object this run found
    started = time.monotonic()
    with archive.lock(exclusive=False, purpose="scrub"):
        for item in order:
            if limits.max_bytes is not None and report.bytes_checked >= limits.max_bytes:
                report.stopped_by = "max-bytes"
                break
            if limits.max_seconds is not None and time.monotonic() - started >= limits.max_seconds:
                report.stopped_by = "max-seconds"
                break
            found[item.id] = result = check_object(archive.store, item.id)
            if result != "ok":
                bad[item.id] = result
            report.objects_checked += 1
            report.bytes_checked += item.stored_size
            for name, store in others:
                if name in served and item.id not in live:
                    continue
                try:
                    result = check_object(store, item.id)
                except ModelarcError as exc:  # a served mirror busy or refusing: this object, on this mirror only
                    report.unreachable.setdefault(name, f"object {item.id}: {str(exc).splitlines()[0]}")
                    continue
                if result == "missing" and (last_sync[name] is None or item.created_at > last_sync[name]):
                    report.mirrors_behind[name] = report.mirrors_behind.get(name, 0) + 1  # not copied there yet
                    continue
                if result != "ok":
                    report.mirrors[name].setdefault(result, []).append(item.id)
                report.bytes_checked += item.stored_size
            if progress:
                progress(item.stored_size)
            if limits.rate:  # sleep off any lead over the allowed rate
                ahead = report.bytes_checked / limits.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if len(found) >= FLUSH_EVERY:
                _flush(archive, found)
    _flush(archive, found)
    with archive.catalog.session() as s:
        if with_mirrors and report.stopped_by == "done":
            for name, _store in others:
                # not one some of whose objects could not be read this time, nor one never synced (nothing to verify)
                if name not in report.unreachable and name not in report.mirrors_never_synced:
                    rows.mark_verified(s, name)
        report.objects_total, report.objects_ever_verified, oldest = rows.scrub_coverage(s)
        report.oldest_verified = None if oldest is None else oldest.isoformat(timespec="seconds") + "Z"
        users = q.snapshots_using(s, bad)
        for oid, result in bad.items():
            target = {"corrupt": report.corrupt, "unsupported": report.unsupported}.get(result, report.missing)
            target[oid] = sorted(sn.label for sn in users.get(oid, []))
        q.audit(
            s,
            archive.settings.actor,
            "scrub",
            "store",
            objects_checked=report.objects_checked,
            corrupt=len(report.corrupt),
            missing=len(report.missing),
            unsupported=len(report.unsupported),
            unreachable=len(report.unreachable),
        )
    return report


def check_object(store: MirrorCopy | ObjectStore, oid: str) -> str:
    """ok, corrupt, missing or unsupported (registry/integrity.py ``CHECKS``); a delta whose base cannot be read
    counts as missing (its content cannot be had) until the base, itself reported, is repaired. An object of a
    newer format (or whose base is) is unsupported: this modelarc cannot tell it good or bad, and must not call it
    damaged, or repair and heal would replace what a newer modelarc wrote."""
    try:
        store.get(ObjectId(oid))
    except (ObjectMissingError, DeltaBaseError):
        return "missing"
    except ObjectCorruptError:
        return "corrupt"
    except UnsupportedObjectError:
        return "unsupported"
    return "ok"


def _flush(archive: Archive, found: dict[str, str]) -> None:
    if found:
        with archive.catalog.session() as s:
            rows.record_checks(s, found)
        found.clear()
