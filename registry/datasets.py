"""Dataset queries: what exists, who was trained on it, and what a snapshot was trained on."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelarc.registry import queries as q
from modelarc.registry.models import DataAttachment, Dataset, Model, Snapshot, SnapshotDataset, utcnow
from modelarc.registry.records import NewDataset, ObjectRecord
from modelarc.registry.refs import SnapshotId


@dataclass(frozen=True)
class TimeRange:
    start: str | None  # ISO dates
    end: str | None

    def to_json(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end}


@dataclass(frozen=True)
class DatasetInfo:
    """One version of a dataset as a training-data manifest described it (deduplicated by ``content_hash``)."""

    name: str
    version: str | None
    source: str | None  # URL
    license: str | None
    size_bytes: int | None
    records: int | None
    tokens: int | None
    time_range: TimeRange
    content_hash: str
    notes: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "license": self.license,
            "size_bytes": self.size_bytes,
            "records": self.records,
            "tokens": self.tokens,
            "time_range": self.time_range.to_json(),
            "content_hash": self.content_hash,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class DatasetListing(DatasetInfo):
    """A row of ``modelarc data ls`` and ``GET /v1/datasets``: the dataset and how many snapshots used it."""

    snapshots: int

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "snapshots": self.snapshots}


@dataclass(frozen=True)
class DatasetUse:
    """A snapshot that was trained or evaluated on a dataset, and in what role."""

    model: str
    snapshot: SnapshotId
    role: str

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "snapshot": self.snapshot, "role": self.role}


@dataclass(frozen=True)
class DatasetVersion(DatasetInfo):
    """One version of a named dataset with the snapshots that used it (``modelarc data show``)."""

    used_by: tuple[DatasetUse, ...]

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "used_by": [u.to_json() for u in self.used_by]}


@dataclass(frozen=True)
class AttachedDataset(DatasetInfo):
    """A dataset a snapshot's training-data manifest names, with its role there (pretrain, eval, ...)."""

    role: str

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "role": self.role}


def _fields(d: Dataset) -> dict[str, Any]:
    return {
        "name": d.name,
        "version": d.version,
        "source": d.source_url,
        "license": d.license,
        "size_bytes": d.size_bytes,
        "records": d.records,
        "tokens": d.tokens,
        "time_range": TimeRange(
            d.time_start.isoformat() if d.time_start else None, d.time_end.isoformat() if d.time_end else None
        ),
        "content_hash": d.content_hash,
        "notes": d.notes,
    }


def list_datasets(s: Session, *, limit: int | None = None, offset: int = 0) -> list[DatasetListing]:
    used = (
        select(SnapshotDataset.dataset_id, func.count(func.distinct(SnapshotDataset.snapshot_id)).label("n"))
        .group_by(SnapshotDataset.dataset_id)
        .subquery()
    )
    rows = s.execute(
        select(Dataset, func.coalesce(used.c.n, 0))
        .outerjoin(used, used.c.dataset_id == Dataset.id)
        .order_by(Dataset.name, Dataset.id)
        .limit(limit)
        .offset(offset or None)
    ).all()
    return [DatasetListing(**_fields(d), snapshots=int(n)) for d, n in rows]


def dataset_detail(s: Session, name: str) -> list[DatasetVersion]:
    """Every version of the dataset ``name`` with the snapshots that used it (empty list: unknown name)."""
    out = []
    for d in s.scalars(select(Dataset).where(Dataset.name == name).order_by(Dataset.id)):
        rows = s.execute(
            select(Model.namespace, Model.name, Snapshot.digest, SnapshotDataset.role)
            .join(Snapshot, Snapshot.id == SnapshotDataset.snapshot_id)
            .join(Model, Model.id == Snapshot.model_id)
            .where(SnapshotDataset.dataset_id == d.id)
            .order_by(Snapshot.id)
        ).all()
        users = tuple(DatasetUse(f"{ns}/{nm}", SnapshotId(dg), role) for ns, nm, dg, role in rows)
        out.append(DatasetVersion(**_fields(d), used_by=users))
    return out


def snapshot_datasets(s: Session, snapshot_id: int) -> list[AttachedDataset]:
    rows = s.execute(
        select(Dataset, SnapshotDataset.role)
        .join(SnapshotDataset, SnapshotDataset.dataset_id == Dataset.id)
        .where(SnapshotDataset.snapshot_id == snapshot_id)
        .order_by(SnapshotDataset.id)
    ).all()
    return [AttachedDataset(**_fields(d), role=role) for d, role in rows]


def find_dataset(s: Session, content_hash: str) -> Dataset | None:
    """The dataset a training-data manifest entry names, by the hash of its identifying fields."""
    return s.scalar(select(Dataset).where(Dataset.content_hash == content_hash))


@dataclass(frozen=True)
class AttachedEntry:
    """A dataset of a new attachment: as the catalog has it (a known dataset keeps the name and version it was
    first recorded with), and whether this attachment added it."""

    dataset: AttachedDataset
    new: bool


@dataclass(frozen=True)
class Attachment:
    id: int  # the attachment's catalog key
    entries: tuple[AttachedEntry, ...]  # in the manifest's order


def attach_datasets(
    s: Session,
    snapshot_id: int,
    manifest: ObjectRecord,
    actor: str,
    datasets: Sequence[NewDataset],
    at: dt.datetime | None = None,
) -> Attachment:
    """Attach a training-data manifest (``manifest``, durable in the store) to the snapshot with row id
    ``snapshot_id``: the attachment, the snapshot's reference to the manifest object (gc keeps it), and each
    dataset, added unless its ``content_hash`` is known. Append-only: nothing recorded before is changed. ``at``
    is when (default now)."""
    at = at or utcnow()
    q.record_objects(s, [manifest])
    att = DataAttachment(snapshot_id=snapshot_id, object_id=manifest.id, actor=actor, attached_at=at)
    s.add(att)
    s.flush()
    q.add_snapshot_objects(s, snapshot_id, [manifest.id])
    entries = []
    for new in datasets:
        row = find_dataset(s, new.content_hash)
        created = row is None
        if row is None:
            row = Dataset(
                content_hash=new.content_hash,
                name=new.name,
                version=new.version,
                source_url=new.source_url,
                license=new.license,
                size_bytes=new.size_bytes,
                records=new.records,
                tokens=new.tokens,
                time_start=new.time_start,
                time_end=new.time_end,
                notes=new.notes,
                created_at=at,
            )
            s.add(row)
            s.flush()
        s.add(
            SnapshotDataset(snapshot_id=snapshot_id, dataset_id=row.id, attachment_id=att.id, role=new.role)
        )
        entries.append(AttachedEntry(AttachedDataset(**_fields(row), role=new.role), created))
    return Attachment(att.id, tuple(entries))
