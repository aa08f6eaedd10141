"""What scrub, mirrors and repair remember: when each object was last re-hashed and what that found, and which
other stores hold copies.

Scrub walks objects oldest-verified first (never-verified before all others), so running it for an hour every night
covers the whole store over a period and always spends its budget where the last look is oldest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from modelarc.errors import NotFoundError, UsageError
from modelarc.registry.models import Snapshot, utcnow
from modelarc.registry.records import ObjectRecord
from modelarc.registry.store_models import Mirror, SnapshotObject, StoredObject

# what a check of an object found; 'unsupported': of a newer format than this modelarc reads (not damaged: repair and
# heal leave it alone, docs/FORMAT.md "Versions")
CHECKS = ("ok", "corrupt", "missing", "unsupported")
# what a copy verified against its id may replace (repair from a mirror, a push's heal): damage, and a header this
# modelarc cannot read (a newer format, or a flipped version or codec byte; the old copy is kept in quarantine/)
REPLACEABLE = ("corrupt", "missing", "unsupported")


@dataclass(frozen=True)
class ScrubItem:
    id: str
    stored_size: int
    created_at: dt.datetime  # when the catalog first recorded it: a mirror synced before then cannot hold it yet


@dataclass(frozen=True)
class MirrorRecord:
    name: str
    target: str
    added_at: dt.datetime
    synced_at: dt.datetime | None
    objects_copied: int
    verified_at: dt.datetime | None


def scrub_order(s: Session) -> list[ScrubItem]:
    """Every catalogued object, never-verified first, then oldest-verified, in id order within a tie.

    One query of ids and sizes (a few MB at a million objects): scrub re-reads the objects, not the catalog."""
    rows = s.execute(
        select(StoredObject.id, StoredObject.stored_size, StoredObject.created_at).order_by(
            StoredObject.verified_at.is_not(None), StoredObject.verified_at, StoredObject.id
        )
    )
    return [ScrubItem(oid, int(size), created) for oid, size, created in rows]


def record_checks(s: Session, results: dict[str, str], when: dt.datetime | None = None) -> None:
    """Remember what re-hashing found for each object (one of ``CHECKS``)."""
    when = when or utcnow()
    for check in CHECKS:
        ids = sorted(oid for oid, found in results.items() if found == check)
        for i in range(0, len(ids), 500):
            s.execute(
                update(StoredObject)
                .where(StoredObject.id.in_(ids[i : i + 500]))
                .values(verified_at=when, last_check=check)
                .execution_options(synchronize_session=False)
            )


def record_replaced(s: Session, objects: Iterable[ObjectRecord], when: dt.datetime | None = None) -> None:
    """Objects whose damaged copies were replaced by a good one (a push that held their bytes): each row describes
    the new copy (its encoding may differ from the lost one's: a delta is rewritten on its own) and is checked
    ``ok``, as repair records what it read back. One statement per object: there are few (scrub found them)."""
    when = when or utcnow()
    for o in objects:
        s.execute(
            update(StoredObject)
            .where(StoredObject.id == o.id)
            .values(
                stored_size=o.stored_size,
                codec=o.codec,
                delta_base=o.delta_base,
                standalone_size=o.standalone_size,
                verified_at=when,
                last_check="ok",
            )
            .execution_options(synchronize_session=False)
        )


def stored_encodings(s: Session, object_ids: Iterable[str]) -> dict[str, ObjectRecord]:
    """How the catalog records each of ``object_ids`` is stored (those it has a row for), to compare with a copy
    written in its place (repair)."""
    ids = sorted(set(object_ids))
    out: dict[str, ObjectRecord] = {}
    for i in range(0, len(ids), 500):
        for o in s.scalars(select(StoredObject).where(StoredObject.id.in_(ids[i : i + 500]))):
            out[o.id] = ObjectRecord(
                o.id, o.raw_size, o.stored_size, o.codec, o.delta_base, o.standalone_size
            )
    return out


def recorded_encodings(s: Session) -> dict[str, ObjectRecord]:
    """How the catalog records every object is stored, in one query: what ``fsck --read-data`` and ``repair
    --read-data`` compare with each object's header (gc keeps bases by the catalog, so a delta whose row names no
    base, or another, can lose its base to gc)."""
    rows = s.execute(
        select(
            StoredObject.id,
            StoredObject.raw_size,
            StoredObject.stored_size,
            StoredObject.codec,
            StoredObject.delta_base,
            StoredObject.standalone_size,
        )
    )
    return {
        oid: ObjectRecord(oid, int(raw), int(stored), codec, base, alone)
        for oid, raw, stored, codec, base, alone in rows
    }


def objects_found_bad(s: Session, checks: tuple[str, ...] = ("corrupt", "missing")) -> dict[str, str]:
    """Objects whose last check found them corrupt or missing (or in ``checks``): what repair fixes without
    re-reading everything."""
    rows = s.execute(select(StoredObject.id, StoredObject.last_check).where(StoredObject.last_check.in_(checks)))
    return {oid: str(check) for oid, check in rows}


FEW_IDS = 500  # ids looked up in one statement (bind limits); for more, one query of every bad object is cheaper


def found_bad_among(
    s: Session, object_ids: Iterable[str], checks: tuple[str, ...] = ("corrupt", "missing")
) -> set[str]:
    """Those of ``object_ids`` whose last check found them corrupt or missing (or in ``checks``), in one query: by id for at most
    ``FEW_IDS`` of them, else every object found bad (usually none, read through the ``last_check`` index: a query
    per 500 ids of a 100,000-object snapshot would cost more)."""
    ids = set(object_ids)
    if len(ids) > FEW_IDS:
        return set(objects_found_bad(s, checks)) & ids
    if not ids:
        return set()
    return set(
        s.scalars(
            select(StoredObject.id).where(
                StoredObject.id.in_(sorted(ids)), StoredObject.last_check.in_(checks)
            )
        )
    )


def catalogued_sizes(s: Session) -> dict[str, int]:
    """Every object the catalog records as durable, with its stored size (a mirror must hold all of them)."""
    return {oid: int(size) for oid, size in s.execute(select(StoredObject.id, StoredObject.stored_size))}


def live_snapshot_sizes(s: Session, *, bases: bool = True) -> dict[str, int]:
    """Every object a snapshot that is not withdrawn needs, with its stored size: what a served mirror, which
    is sent live snapshots only, must hold. ``bases=False`` leaves out the objects live snapshots keep only as the
    bases of their deltas (``as_base``): a served mirror holds them too but hands them to no reader of those
    snapshots, only the deltas decoded against them."""
    query = (
        select(StoredObject.id, StoredObject.stored_size)
        .join(SnapshotObject, SnapshotObject.object_id == StoredObject.id)
        .join(Snapshot, Snapshot.id == SnapshotObject.snapshot_id)
        .where(Snapshot.tombstoned_at.is_(None))
    )
    if not bases:
        query = query.where(SnapshotObject.as_base.is_(False))
    return {oid: int(size) for oid, size in s.execute(query.distinct())}


def scrub_coverage(s: Session) -> tuple[int, int, dt.datetime | None]:
    """(objects, objects ever verified, the oldest verification among them)."""
    total = s.scalar(select(func.count()).select_from(StoredObject)) or 0
    verified = s.scalar(select(func.count()).where(StoredObject.verified_at.is_not(None))) or 0
    oldest = s.scalar(select(func.min(StoredObject.verified_at)))
    return int(total), int(verified), oldest


# ------------------------------------------------------------------------------------------------- mirrors
def _record(row: Mirror) -> MirrorRecord:
    return MirrorRecord(
        row.name, row.target, row.added_at, row.synced_at, row.objects_copied, row.verified_at
    )


def add_mirror(s: Session, name: str, target: str) -> MirrorRecord:
    if s.get(Mirror, name) is not None:
        raise UsageError(f"a mirror named {name!r} already exists (modelarc mirror rm {name} first)")
    for row in s.scalars(select(Mirror)):
        if row.target == target:
            raise UsageError(f"{target} is already the mirror {row.name!r}")
    row = Mirror(name=name, target=target, added_at=utcnow(), objects_copied=0)
    s.add(row)
    s.flush()
    return _record(row)


def list_mirrors(s: Session) -> list[MirrorRecord]:
    return [_record(r) for r in s.scalars(select(Mirror).order_by(Mirror.name))]


def get_mirror(s: Session, name: str) -> MirrorRecord:
    row = s.get(Mirror, name)
    if row is None:
        known = ", ".join(r.name for r in s.scalars(select(Mirror).order_by(Mirror.name))) or "none"
        raise NotFoundError(f"no mirror named {name!r} (mirrors: {known}; modelarc mirror add NAME TARGET)")
    return _record(row)


def remove_mirror(s: Session, name: str) -> MirrorRecord:
    row = s.get(Mirror, name)
    if row is None:
        get_mirror(s, name)  # raises with the list of names
    assert row is not None
    record = _record(row)
    s.delete(row)
    return record


def mark_synced(s: Session, name: str, copied: int) -> None:
    s.execute(
        update(Mirror)
        .where(Mirror.name == name)
        .values(synced_at=utcnow(), objects_copied=Mirror.objects_copied + copied)
        .execution_options(synchronize_session=False)
    )


def mark_verified(s: Session, name: str) -> None:
    s.execute(
        update(Mirror)
        .where(Mirror.name == name)
        .values(verified_at=utcnow())
        .execution_options(synchronize_session=False)
    )
