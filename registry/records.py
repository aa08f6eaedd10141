"""Plain values that cross into the registry from the archive layer (the registry never sees bytes or files)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from modelarc.registry.refs import SnapshotId

# How a snapshot may derive from a declared parent (lineage); the catalog's vocabulary, checked at push and commit.
RELATIONS = ("finetune", "quantized", "merge", "adapter", "distilled", "continued-pretrain")


@dataclass(frozen=True)
class NewTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    length: int
    digest: str


@dataclass(frozen=True)
class NewFile:
    path: str
    size: int
    sha256: str
    kind: str
    tensors: tuple[NewTensor, ...] = ()


@dataclass(frozen=True)
class ObjectRecord:
    id: str
    raw_size: int
    stored_size: int
    codec: str
    delta_base: str | None = None
    standalone_size: int | None = None


@dataclass(frozen=True)
class Provenance:
    """What the user says about a snapshot at push time."""

    cutoff: dt.date | None = None
    cutoff_precision: str | None = None  # "year" | "month" | "day"
    license: str | None = None
    description: str | None = None
    source_url: str | None = None
    parents: tuple[tuple[str, str], ...] = ()  # (REF text, relation)
    release_date: dt.date | None = None

    # the fields a snapshot offer and a catalog record carry as JSON (dates as ISO strings); parents travel apart
    JSON_FIELDS = ("cutoff", "cutoff_precision", "license", "description", "source_url", "release_date")

    def to_json(self) -> dict[str, Any]:
        return {
            name: (value.isoformat() if isinstance(value, dt.date) else value)
            for name in self.JSON_FIELDS
            if (value := getattr(self, name)) is not None
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Provenance:
        """The JSON form back; ``ValueError`` for a date that is not ISO ``YYYY-MM-DD``."""

        def day(text: str | None) -> dt.date | None:
            return dt.date.fromisoformat(text) if text else None

        return cls(
            cutoff=day(doc.get("cutoff")),
            cutoff_precision=doc.get("cutoff_precision"),
            license=doc.get("license"),
            description=doc.get("description"),
            source_url=doc.get("source_url"),
            release_date=day(doc.get("release_date")),
        )


@dataclass(frozen=True)
class NewSnapshot:
    digest: SnapshotId
    logical_bytes: int
    stored_bytes_added: int
    files: tuple[NewFile, ...]
    parameter_count: int
    dtypes: dict[str, int]
    architecture: dict[str, Any]
    object_ids: frozenset[str]
    provenance: Provenance = field(default_factory=Provenance)
    # objects kept only as the bases of delta objects in ``object_ids`` (archive/deltas.py)
    base_object_ids: frozenset[str] = frozenset()
    pushed_by: str | None = None


@dataclass(frozen=True)
class NewDataset:
    """One dataset entry of a training-data manifest, as the catalog records it (archive/provenance/data.py)."""

    # the data's hash (stated sha256, else a hash of the description); not the row's identity, which is the whole
    # description (registry/dataset_identity.py): a known hash described otherwise is another row
    content_hash: str
    name: str
    role: str  # this attachment's use of it: pretrain, finetune, eval, ...
    version: str | None = None
    source_url: str | None = None
    license: str | None = None
    size_bytes: int | None = None
    records: int | None = None
    tokens: int | None = None
    time_start: dt.date | None = None  # the first day of the period the manifest named
    time_end: dt.date | None = None
    notes: str | None = None
    time_start_precision: str | None = None  # "year" | "month" | "day": the period (None: a day)
    time_end_precision: str | None = None
