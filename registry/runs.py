"""Recorded runs (``modelarc run --record``): the signed record is in the store; these rows index it."""

from __future__ import annotations

import datetime as dt
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelarc.errors import InvalidRefError, NotFoundError
from modelarc.registry import queries as q
from modelarc.registry.models import Model, RunRecord, SigningKey, Snapshot, get_by_id, utcnow
from modelarc.registry.records import ObjectRecord
from modelarc.registry.refs import SnapshotId, parse_ref

MAX_LISTED = 500


def add_run(
    s: Session,
    *,
    digest: SnapshotId,
    ref: str,
    actor: str,
    record: dict[str, Any],
    stored: ObjectRecord,
    envelope: str,
    key_fingerprint: str,
    at: dt.datetime | None = None,
) -> int:
    """Index a run of snapshot ``digest`` whose canonical record is the durable object ``stored``; its id.
    ``at`` is when it was recorded (default now)."""
    at = at or utcnow()
    snap = _snapshot_run(s, ref, digest)
    if snap is None:
        raise NotFoundError(f"snapshot {digest} is not in the catalog")
    q.record_objects(s, [stored])
    q.add_snapshot_objects(s, snap.id, [stored.id])
    row = RunRecord(
        snapshot_id=snap.id,
        created_at=at,
        actor=actor,
        record=record,
        object_id=stored.id,
        signature=envelope,
        key_fingerprint=key_fingerprint,
    )
    s.add(row)
    s.flush()
    q.audit(s, actor, "run.record", ref, at=at, run=row.id, snapshot=digest)
    return row.id


def _snapshot_run(s: Session, ref: str, digest: SnapshotId) -> Snapshot | None:
    """The snapshot row a run of ``ref`` (resolved to ``digest``) is filed under: the one of the model ``ref``
    names. Two models may hold the same bytes under one id, each with its own access policy; a run of the gated
    one filed under the public one was served as the public one's (archive/access.py judges a run document by
    its snapshot's policy). Any model's snapshot with that id only when ``ref`` names no model holding it."""
    try:
        named = parse_ref(ref)
    except InvalidRefError:
        named = None
    if named is not None:
        found = s.scalar(
            select(Snapshot)
            .join(Model, Model.id == Snapshot.model_id)
            .where(Model.namespace == named.namespace, Model.name == named.name, Snapshot.digest == digest)
        )
        if found is not None:
            return found
    return q.find_snapshot_by_digest(s, digest)


def run_indexed(s: Session, object_id: str) -> bool:
    """Whether a run whose canonical record is object ``object_id`` is indexed already."""
    return s.scalar(select(RunRecord.id).where(RunRecord.object_id == object_id).limit(1)) is not None


class ListedRun(NamedTuple):
    """One row of the run index as ``runs`` lists it: the catalog's own columns, and the document as stored (not
    read here: what its fields mean depends on its ``version``, which ``archive/runtime/runs.py`` checks)."""

    id: int
    created_at: dt.datetime
    actor: str
    snapshot: SnapshotId  # the snapshot the catalog files it under
    record: Any  # the run document as the catalog states it


def list_runs(s: Session, snapshot_id: int | None = None) -> list[ListedRun]:
    """The newest runs first (at most ``MAX_LISTED``)."""
    stmt = (
        select(Snapshot.digest, RunRecord)
        .join(Snapshot, Snapshot.id == RunRecord.snapshot_id)
        .order_by(RunRecord.id.desc())
        .limit(MAX_LISTED)
    )
    if snapshot_id is not None:
        stmt = stmt.where(RunRecord.snapshot_id == snapshot_id)
    return [
        ListedRun(r.id, r.created_at, r.actor, SnapshotId(str(digest)), r.record)
        for digest, r in s.execute(stmt)
    ]


class RecordedRun(NamedTuple):
    """One run as the catalog holds it, with what checking it needs."""

    envelope: str  # the DSSE envelope over the canonical record
    pem: bytes | None  # the signer's public key, if that key is trusted
    record: Any  # the record as the catalog states it (what `runs` lists)
    snapshot: SnapshotId  # the snapshot the catalog files it under
    object_id: str | None  # the canonical record in the store, if it was kept


def recorded_run(s: Session, run_id: int) -> RecordedRun:
    row = get_by_id(s, RunRecord, run_id)
    if row is None:
        raise NotFoundError(f"no run record {run_id} (see `modelarc runs`)")
    key = s.scalar(
        select(SigningKey).where(SigningKey.fingerprint == row.key_fingerprint, SigningKey.trusted.is_(True))
    )
    digest = s.scalar(select(Snapshot.digest).where(Snapshot.id == row.snapshot_id))
    return RecordedRun(
        row.signature or "",
        key.public_pem.encode() if key else None,
        row.record,
        SnapshotId(str(digest)),
        row.object_id,
    )
