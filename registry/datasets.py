"""Dataset queries: what exists, who was trained on it, and what a snapshot was trained on."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelarc.registry.models import Dataset, Model, Snapshot, SnapshotDataset


def _dataset_json(d: Dataset) -> dict[str, Any]:
    return {
        "name": d.name,
        "version": d.version,
        "source": d.source_url,
        "license": d.license,
        "size_bytes": d.size_bytes,
        "records": d.records,
        "tokens": d.tokens,
        "time_range": {
            "start": d.time_start.isoformat() if d.time_start else None,
            "end": d.time_end.isoformat() if d.time_end else None,
        },
        "content_hash": d.content_hash,
        "notes": d.notes,
    }


def list_datasets(s: Session, *, limit: int | None = None, offset: int = 0) -> list[dict[str, Any]]:
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
    return [{**_dataset_json(d), "snapshots": int(n)} for d, n in rows]


def dataset_detail(s: Session, name: str) -> list[dict[str, Any]]:
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
        users = [{"model": f"{ns}/{nm}", "snapshot": dg, "role": role} for ns, nm, dg, role in rows]
        out.append({**_dataset_json(d), "used_by": users})
    return out


def snapshot_datasets(s: Session, snapshot_id: int) -> list[dict[str, Any]]:
    rows = s.execute(
        select(Dataset, SnapshotDataset.role)
        .join(SnapshotDataset, SnapshotDataset.dataset_id == Dataset.id)
        .where(SnapshotDataset.snapshot_id == snapshot_id)
        .order_by(SnapshotDataset.id)
    ).all()
    return [{**_dataset_json(d), "role": role} for d, role in rows]


def find_dataset(s: Session, content_hash: str) -> Dataset | None:
    """The dataset a training-data manifest entry names, by the hash of its identifying fields."""
    return s.scalar(select(Dataset).where(Dataset.content_hash == content_hash))
