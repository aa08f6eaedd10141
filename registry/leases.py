"""Object leases: how a transfer in flight keeps its uploaded objects safe from gc until it commits or gives up.

A lease is (object id, holder, expiry). Taking one again moves its expiry; a commit releases the leases its own
holder took on the objects it just recorded, and nothing else. gc reads the unexpired leases while it holds the
store's exclusive lock, and uploads take their lease under the shared lock before the object is written, so gc
never sees an uploaded object without also seeing its lease.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from modelarc.registry.models import utcnow
from modelarc.registry.store_models import ObjectLease

LEASE_BATCH = 500


def take_leases(
    s: Session, object_ids: Iterable[str], holder: str, ttl: dt.timedelta, *, uploaded: bool = False
) -> None:
    """Lease (or re-lease) ``object_ids`` for ``holder`` until now + ``ttl``; ``uploaded``: the holder sent
    these bytes itself (a lease on an object found present says nothing about knowing its bytes)."""
    expires = utcnow() + ttl
    rows = [
        {"object_id": oid, "holder": holder[:200], "expires_at": expires, "uploaded": uploaded}
        for oid in sorted(set(object_ids))
    ]
    if not rows:
        return
    for i in range(0, len(rows), LEASE_BATCH):
        stmt = _upsert(s).values(rows[i : i + LEASE_BATCH])
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=["object_id", "holder"],
                set_={
                    "expires_at": stmt.excluded.expires_at,
                    "uploaded": ObjectLease.uploaded | stmt.excluded.uploaded,
                },
            )
        )


def _upsert(s: Session) -> Any:
    """``INSERT`` with ``ON CONFLICT`` in the dialect of the session's database (PostgreSQL or SQLite).

    The dialects are imported here, not at the top: every command imports this module (registry/recording.py), and
    the PostgreSQL dialect package loads the modules of all its drivers (~20-30 ms of start-up measured with
    ``-X importtime``), even for a SQLite catalog.
    """
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(ObjectLease)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(ObjectLease)


def release_leases(s: Session, object_ids: Iterable[str], holder: str) -> None:
    """Drop ``holder``'s leases on ``object_ids`` (they are now referenced by a committed snapshot)."""
    ids = sorted(set(object_ids))
    for i in range(0, len(ids), LEASE_BATCH):
        s.execute(
            delete(ObjectLease).where(
                ObjectLease.holder == holder[:200], ObjectLease.object_id.in_(ids[i : i + LEASE_BATCH])
            )
        )


def leased_object_ids(s: Session) -> set[str]:
    """Objects with at least one unexpired lease; expired leases are deleted on the way."""
    now = utcnow()
    s.execute(delete(ObjectLease).where(ObjectLease.expires_at <= now))
    return set(s.scalars(select(ObjectLease.object_id).distinct()))


def uploaded_object_ids(s: Session, object_ids: Iterable[str], holder: str) -> set[str]:
    """Those of ``object_ids`` that ``holder`` uploaded (its leases marked uploaded, expired or not: an expired
    lease no longer keeps the object from gc, but the upload it records still proves the pusher had the bytes)."""
    ids = sorted(set(object_ids))
    found: set[str] = set()
    for i in range(0, len(ids), LEASE_BATCH):
        found.update(
            s.scalars(
                select(ObjectLease.object_id).where(
                    ObjectLease.object_id.in_(ids[i : i + LEASE_BATCH]),
                    ObjectLease.holder == holder[:200],
                    ObjectLease.uploaded.is_(True),
                )
            )
        )
    return found


def drop_presence_leases(s: Session, object_ids: Iterable[str]) -> None:
    """Drop the leases on ``object_ids`` that were taken because the objects were found present, not sent.

    A withdrawal calls this for the weights it releases: a pusher that only asked `/v1/transfer/check` about a
    snapshot it could read then must not keep those weights on disk after the archive withdrew them. A lease on
    bytes the pusher uploaded itself stays: it holds what the pusher already has.
    """
    ids = sorted(set(object_ids))
    for i in range(0, len(ids), LEASE_BATCH):
        s.execute(
            delete(ObjectLease).where(
                ObjectLease.object_id.in_(ids[i : i + LEASE_BATCH]), ObjectLease.uploaded.is_(False)
            )
        )
