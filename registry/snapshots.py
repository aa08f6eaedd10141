"""Snapshots as the catalog hands them out: frozen values built from the rows inside the caller's session.

Nothing above registry/ holds an ORM row or needs a session to read one; a ``SnapshotRecord`` carries its catalog
key (``row_id``) so later queries about the same snapshot can name it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from modelarc.errors import SnapshotNotFoundError
from modelarc.registry.models import File, Lineage, Snapshot, TensorRow, utcnow
from modelarc.registry.refs import SnapshotId


@dataclass(frozen=True)
class SnapshotRecord:
    """One snapshot row, as values. ``architecture`` and ``dtypes`` are copies of the row's JSON."""

    row_id: int  # the catalog's key, for registry queries; not the snapshot id (``digest``)
    digest: SnapshotId
    model: str  # ns/name
    created_at: dt.datetime
    logical_bytes: int
    stored_bytes_added: int
    file_count: int
    tensor_count: int
    parameter_count: int
    dtypes: dict[str, int]
    architecture: dict[str, Any]
    cutoff: dt.date | None
    cutoff_precision: str | None  # "year" | "month" | "day"
    license: str | None
    description: str | None
    source_url: str | None
    pushed_by: str | None
    release_date: dt.date | None
    tombstoned_at: dt.datetime | None
    tombstone_reason: str | None

    @property
    def withdrawn(self) -> bool:
        return self.tombstoned_at is not None

    @property
    def label(self) -> str:
        """``ns/name@sha256:<hex>``: the snapshot named without a tag."""
        return f"{self.model}@{self.digest}"


def snapshot_record(row: Snapshot) -> SnapshotRecord:
    """The values of ``row``; call inside the session that loaded it (its model is read too)."""
    return SnapshotRecord(
        row_id=row.id,
        digest=SnapshotId(row.digest),
        model=row.model.full_name,
        created_at=row.created_at,
        logical_bytes=row.logical_bytes,
        stored_bytes_added=row.stored_bytes_added,
        file_count=row.file_count,
        tensor_count=row.tensor_count,
        parameter_count=row.parameter_count,
        dtypes=dict(row.dtypes or {}),
        architecture=dict(row.architecture or {}),
        cutoff=row.cutoff,
        cutoff_precision=row.cutoff_precision,
        license=row.license,
        description=row.description,
        source_url=row.source_url,
        pushed_by=row.pushed_by,
        release_date=row.release_date,
        tombstoned_at=row.tombstoned_at,
        tombstone_reason=row.tombstone_reason,
    )


@dataclass(frozen=True)
class ParentLink:
    """A declared parent of a snapshot: which snapshot, and how the child derives from it."""

    model: str
    snapshot: SnapshotId
    relation: str

    @property
    def label(self) -> str:
        return f"{self.model}@{self.snapshot}"

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "snapshot": self.snapshot, "relation": self.relation}


@dataclass(frozen=True)
class FileRecord:
    path: str
    size: int
    sha256: str  # hex, no prefix
    kind: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "kind": self.kind}


def parents_of(s: Session, snapshot_id: int) -> list[ParentLink]:
    """The declared parents of the snapshot with row id ``snapshot_id``."""
    rows = s.execute(
        select(Snapshot, Lineage.relation)
        .join(Lineage, Lineage.parent_id == Snapshot.id)
        .where(Lineage.child_id == snapshot_id)
        .options(selectinload(Snapshot.model))
    ).all()
    return [
        ParentLink(parent.model.full_name, SnapshotId(parent.digest), relation) for parent, relation in rows
    ]


def unrecorded_parents_of(s: Session, snapshot_id: int) -> list[ParentLink]:
    """The parents the snapshot's first recording declared that this catalog lacked then (``Snapshot.
    unrecorded_parents``): the only lineage a later recording of it may add."""
    listed = s.scalar(select(Snapshot.unrecorded_parents).where(Snapshot.id == snapshot_id)) or []
    return [
        ParentLink(str(p["model"]), SnapshotId(str(p["snapshot"])), str(p["relation"]))
        for p in listed
        if isinstance(p, dict) and {"model", "snapshot", "relation"} <= p.keys()
    ]


def snapshot_files(s: Session, snapshot_id: int) -> list[FileRecord]:
    rows = s.scalars(select(File).where(File.snapshot_id == snapshot_id).order_by(File.path))
    return [FileRecord(f.path, f.size, f.sha256, f.kind) for f in rows]


@dataclass(frozen=True)
class FormatTensors:
    """The tensors of one weight format (the kind of the files holding them: safetensors, gguf) in a snapshot.

    Kept apart per format because the formats' dtype names overlap (both have F32, F16, BF16...) while meaning
    tensors of different files, with shapes in different orders (GGUF's ggml order is reversed): a snapshot
    carrying a model in both formats counted as one list put the GGUF tensors among the safetensors ones."""

    tensors: int
    parameters: int
    dtypes: dict[str, int]  # dtype -> parameters

    def to_json(self) -> dict[str, Any]:
        return {"tensors": self.tensors, "parameters": self.parameters, "dtypes": dict(self.dtypes)}


def tensors_by_format(s: Session, snapshot_id: int) -> dict[str, FormatTensors]:
    """The snapshot's tensors counted per file kind (only kinds that hold tensors), by kind."""
    counts: dict[str, tuple[int, dict[str, int]]] = {}
    rows = s.execute(
        select(File.kind, TensorRow.dtype, TensorRow.shape)
        .join(File, File.id == TensorRow.file_id)
        .where(File.snapshot_id == snapshot_id)
    )
    for kind, dtype, shape in rows:
        tensors, dtypes = counts.setdefault(kind, (0, {}))
        dtypes[dtype] = dtypes.get(dtype, 0) + math.prod(shape or ())
        counts[kind] = (tensors + 1, dtypes)
    return {
        kind: FormatTensors(tensors, sum(dtypes.values()), dict(sorted(dtypes.items())))
        for kind, (tensors, dtypes) in sorted(counts.items())
    }


def files_of_snapshots(s: Session, snapshot_ids: Sequence[int]) -> dict[int, list[FileRecord]]:
    """``snapshot_files`` of several snapshots (by row id), in one query per 500 ids (every id is a key)."""
    out: dict[int, list[FileRecord]] = {sid: [] for sid in snapshot_ids}
    ids = list(out)
    for i in range(0, len(ids), 500):
        rows = s.scalars(
            select(File).where(File.snapshot_id.in_(ids[i : i + 500])).order_by(File.snapshot_id, File.path)
        )
        for f in rows:
            out[f.snapshot_id].append(FileRecord(f.path, f.size, f.sha256, f.kind))
    return out


def withdraw_snapshot(s: Session, snapshot_id: int, reason: str, at: dt.datetime | None = None) -> None:
    """Mark the snapshot tombstoned at ``at`` (default now); its row, manifest and provenance stay."""
    row = s.get(Snapshot, snapshot_id)
    if row is None:
        raise SnapshotNotFoundError(f"snapshot row {snapshot_id} is gone from the catalog")
    row.tombstoned_at = at or utcnow()
    row.tombstone_reason = reason
