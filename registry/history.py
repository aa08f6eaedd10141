"""The catalog's facts as values with their exact times, oldest first: what ``modelarc upgrade`` turns into catalog
records for an archive older than them (archive/upgrade.py); and whether a catalog holds anything at all, which
``rebuild-catalog`` asks before it fills one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased, selectinload

from modelarc.registry.models import (
    AuditEvent,
    DataAttachment,
    Dataset,
    Lineage,
    Model,
    RunRecord,
    Signature,
    Snapshot,
    TagHistory,
)
from modelarc.registry.queries import AuditEntry
from modelarc.registry.refs import SnapshotId
from modelarc.registry.snapshots import ParentLink, SnapshotRecord, snapshot_record
from modelarc.registry.store_models import StoredObject


def content_counts(s: Session) -> dict[str, int]:
    """How many models, snapshots, objects, datasets and runs the catalog holds. Keys, the audit log, mirrors and
    tokens are left out: `modelarc init` adds a key (and its audit entry) to a catalog that is still empty."""
    tables = {
        "models": Model,
        "snapshots": Snapshot,
        "objects": StoredObject,
        "datasets": Dataset,
        "runs": RunRecord,
    }
    return {name: int(s.scalar(select(func.count()).select_from(t)) or 0) for name, t in tables.items()}


def has_snapshots(s: Session) -> bool:
    return s.scalar(select(Snapshot.id).limit(1)) is not None


@dataclass(frozen=True)
class SignatureFact:
    object_id: str
    key_fingerprint: str
    created_at: dt.datetime


@dataclass(frozen=True)
class SnapshotFact:
    snapshot: SnapshotRecord
    signatures: tuple[SignatureFact, ...]
    parents: tuple[ParentLink, ...]


def snapshot_facts(s: Session) -> list[SnapshotFact]:
    """Every snapshot, in the order it was created, with its signatures (oldest first) and declared parents."""
    rows = s.scalars(
        select(Snapshot)
        .options(selectinload(Snapshot.model), selectinload(Snapshot.signatures).selectinload(Signature.key))
        .order_by(Snapshot.created_at, Snapshot.id)
    ).all()
    parent = aliased(Snapshot)
    links: dict[int, list[ParentLink]] = {}
    for child_id, namespace, name, digest, relation in s.execute(
        select(Lineage.child_id, Model.namespace, Model.name, parent.digest, Lineage.relation)
        .join(parent, parent.id == Lineage.parent_id)
        .join(Model, Model.id == parent.model_id)
        .order_by(Lineage.child_id, Lineage.parent_id)
    ):
        links.setdefault(child_id, []).append(ParentLink(f"{namespace}/{name}", SnapshotId(digest), relation))
    return [
        SnapshotFact(
            snapshot_record(row),
            tuple(
                SignatureFact(sig.object_id, sig.key.fingerprint, sig.created_at)
                for sig in sorted(row.signatures, key=lambda g: g.id)
            ),
            tuple(links.get(row.id, [])),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class TagMoveFact:
    model: str
    tag: str
    snapshot: SnapshotId
    previous: SnapshotId | None
    at: dt.datetime
    actor: str | None


def tag_move_facts(s: Session) -> list[TagMoveFact]:
    """Every tag move, in the order the catalog made them."""
    new, old = aliased(Snapshot), aliased(Snapshot)
    rows = s.execute(
        select(Model.namespace, Model.name, TagHistory, new.digest, old.digest)
        .join(Model, Model.id == TagHistory.model_id)
        .join(new, new.id == TagHistory.new_snapshot_id)
        .outerjoin(old, old.id == TagHistory.old_snapshot_id)
        .order_by(TagHistory.id)
    )
    return [
        TagMoveFact(
            f"{ns}/{name}", h.tag, SnapshotId(to), SnapshotId(fro) if fro else None, h.moved_at, h.actor
        )
        for ns, name, h, to, fro in rows
    ]


@dataclass(frozen=True)
class AttachmentFact:
    model: str
    snapshot: SnapshotId
    object_id: str | None  # None: attached before manifests were kept in the store
    at: dt.datetime
    actor: str


def attachment_facts(s: Session) -> list[AttachmentFact]:
    rows = s.execute(
        select(Model.namespace, Model.name, Snapshot.digest, DataAttachment)
        .join(Snapshot, Snapshot.id == DataAttachment.snapshot_id)
        .join(Model, Model.id == Snapshot.model_id)
        .order_by(DataAttachment.id)
    )
    return [
        AttachmentFact(f"{ns}/{name}", SnapshotId(digest), a.object_id, a.attached_at, a.actor)
        for ns, name, digest, a in rows
    ]


@dataclass(frozen=True)
class RunFact:
    snapshot: SnapshotId
    ref: str
    object_id: str | None
    signature: str | None
    key_fingerprint: str | None
    at: dt.datetime
    actor: str


def run_facts(s: Session) -> list[RunFact]:
    rows = s.execute(
        select(Snapshot.digest, RunRecord)
        .join(Snapshot, Snapshot.id == RunRecord.snapshot_id)
        .order_by(RunRecord.id)
    )
    return [
        RunFact(
            SnapshotId(digest),
            str(r.record.get("ref") or ""),
            r.object_id,
            r.signature,
            r.key_fingerprint,
            r.created_at,
            r.actor,
        )
        for digest, r in rows
    ]


def audit_entries(s: Session, actions: Sequence[str]) -> list[AuditEntry]:
    """Every audit event of ``actions``, oldest first (for who withdrew a snapshot, who trusted a key, ...)."""
    rows = s.scalars(select(AuditEvent).where(AuditEvent.action.in_(list(actions))).order_by(AuditEvent.id))
    return [AuditEntry(e.at, e.actor, e.action, e.target, dict(e.details)) for e in rows]
