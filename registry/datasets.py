"""Dataset queries: what exists, who was trained on it, and what a snapshot was trained on."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from modelarc.errors import UsageError
from modelarc.registry import queries as q
from modelarc.registry.bounds import ROW_ID_MAX
from modelarc.registry.dataset_identity import bound_text, description_hash
from modelarc.registry.models import DataAttachment, Dataset, Model, Snapshot, SnapshotDataset, utcnow
from modelarc.registry.records import NewDataset, ObjectRecord
from modelarc.registry.refs import SnapshotId


@dataclass(frozen=True)
class TimeRange:
    """When the content was written, each bound at the precision the manifest gave: ``2010``, ``2020-06`` or
    ``2020-06-15`` (ISO 8601 dates, reduced to a year or a month), so an end of ``2020-06`` still means all of June,
    not its first day. The precisions say the same, spelled out as snapshots' ``cutoff_precision`` is."""

    start: str | None
    end: str | None
    start_precision: str | None = None  # "year" | "month" | "day"; None when the bound is
    end_precision: str | None = None

    @classmethod
    def of(
        cls,
        start: dt.date | None,
        start_precision: str | None,
        end: dt.date | None,
        end_precision: str | None,
    ) -> TimeRange:
        """The range from the catalog's columns: each bound the first day of its period, and its precision. A
        bound recorded before precisions were kept (migration 0021) has none: its date is shown as it was
        recorded, and its precision is unknown (None), not claimed; the next attachment of its manifest, or a
        rebuild, gives it the manifest's (``find_dataset``)."""
        return cls(
            bound_text(start, start_precision),
            bound_text(end, end_precision),
            start_precision if start else None,
            end_precision if end else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "start_precision": self.start_precision,
            "end_precision": self.end_precision,
        }


@dataclass(frozen=True)
class DatasetInfo:
    """One version of a dataset as a training-data manifest described it: the same description is one row, the same
    ``content_hash`` described otherwise is another (registry/dataset_identity.py)."""

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
    description_hash: str  # the row's identity: the hash of all the fields above

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
            "description_hash": self.description_hash,
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
class OtherDescription:
    """Another recorded description of the same ``content_hash``: someone stated that data hash with other
    labels (another name, licence, notes...). ``data show`` names them, so a relabelled copy is not hidden."""

    name: str
    version: str | None
    license: str | None
    description_hash: str
    snapshots: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "license": self.license,
            "description_hash": self.description_hash,
            "snapshots": self.snapshots,
        }


@dataclass(frozen=True)
class DatasetVersion(DatasetInfo):
    """One version of a named dataset with the snapshots that used it (``modelarc data show``), and the other
    descriptions recorded for its ``content_hash``."""

    used_by: tuple[DatasetUse, ...]
    described_otherwise: tuple[OtherDescription, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            **super().to_json(),
            "used_by": [u.to_json() for u in self.used_by],
            "described_otherwise": [o.to_json() for o in self.described_otherwise],
        }


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
        "time_range": TimeRange.of(d.time_start, d.time_start_precision, d.time_end, d.time_end_precision),
        "content_hash": d.content_hash,
        "notes": d.notes,
        "description_hash": d.description_hash,
    }


MAX_PAGE = 2**63 - 2  # one more row than the page is read, and the catalog's integers are signed 64-bit

# A page is built from plain rows, unpacked as tuples: ORM objects, or even reading a Row's fields by name, cost more
# than the query itself on a page of 100.
_COLUMNS = (
    Dataset.id,
    Dataset.name,
    Dataset.version,
    Dataset.source_url,
    Dataset.license,
    Dataset.size_bytes,
    Dataset.records,
    Dataset.tokens,
    Dataset.time_start,
    Dataset.time_start_precision,
    Dataset.time_end,
    Dataset.time_end_precision,
    Dataset.content_hash,
    Dataset.notes,
    Dataset.description_hash,
    Dataset.snapshot_count,
)


@dataclass(frozen=True)
class DatasetPage:
    """One page of ``data ls`` / ``GET /v1/datasets``, and the cursor of the next page (None: this is the last)."""

    rows: tuple[DatasetListing, ...]
    next_cursor: str | None


def encode_dataset_cursor(row_id: int) -> str:
    """The opaque cursor of the page after the dataset with catalog key ``row_id`` (base64url JSON, like /v1's)."""
    return base64.urlsafe_b64encode(json.dumps({"a": row_id}).encode()).decode().rstrip("=")


def _decode_dataset_cursor(cursor: str) -> int:
    bad = UsageError(
        f"invalid dataset cursor {cursor[:100]!r}: give the cursor of the previous page as it was"
    )
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        row_id = doc["a"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise bad from None
    if not isinstance(row_id, int) or isinstance(row_id, bool) or not 0 < row_id <= ROW_ID_MAX:
        raise bad
    return row_id


def list_datasets(s: Session, *, limit: int = 100, cursor: str | None = None) -> DatasetPage:
    """Datasets by name (then catalog key), ``limit`` at a time, starting after ``cursor``.

    Keyset paging: the cursor names the last dataset of the previous page and the next page starts after its
    (name, id), through the name index. A deep page costs what the first does, and datasets added while paging
    never shift a page. ``UsageError`` for a cursor that is not one this function gave.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise UsageError(f"limit must be between 1 and {MAX_PAGE}")
    query = select(*_COLUMNS).order_by(Dataset.name, Dataset.id)
    if cursor:  # "" is no cursor, as in /v1's other lists
        after = _decode_dataset_cursor(cursor)
        name = s.scalar(select(Dataset.name).where(Dataset.id == after))
        if name is None:  # datasets are never deleted: a cursor naming none was not made here
            raise UsageError(f"invalid dataset cursor {cursor[:100]!r}: it names no dataset of this archive")
        query = query.where(tuple_(Dataset.name, Dataset.id) > tuple_(name, after))
    rows = s.execute(query.limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return DatasetPage(
        tuple(_listing(*tuple(r)) for r in rows), encode_dataset_cursor(rows[-1][0]) if more else None
    )


def _listing(
    _id: int,
    name: str,
    version: str | None,
    source_url: str | None,
    license: str | None,
    size_bytes: int | None,
    records: int | None,
    tokens: int | None,
    time_start: dt.date | None,
    time_start_precision: str | None,
    time_end: dt.date | None,
    time_end_precision: str | None,
    content_hash: str,
    notes: str | None,
    description_hash: str,
    snapshot_count: int,
) -> DatasetListing:
    """A row of the columns in ``_COLUMNS``, in their order."""
    return DatasetListing(
        name=name,
        version=version,
        source=source_url,
        license=license,
        size_bytes=size_bytes,
        records=records,
        tokens=tokens,
        time_range=TimeRange.of(time_start, time_start_precision, time_end, time_end_precision),
        content_hash=content_hash,
        notes=notes,
        description_hash=description_hash,
        snapshots=snapshot_count,
    )


_OTHER_COLUMNS = (
    Dataset.name,
    Dataset.version,
    Dataset.license,
    Dataset.description_hash,
    Dataset.snapshot_count,
)


def dataset_detail(s: Session, name: str) -> list[DatasetVersion]:
    """Every version of the dataset ``name`` with the snapshots that used it (empty list: unknown name), each with
    the other descriptions recorded for its content hash (under any name)."""
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
        others = tuple(
            OtherDescription(name, version, license, digest, count)
            for name, version, license, digest, count in s.execute(
                select(*_OTHER_COLUMNS)
                .where(Dataset.content_hash == d.content_hash, Dataset.id != d.id)
                .order_by(Dataset.id)
            )
        )
        out.append(DatasetVersion(**_fields(d), used_by=users, described_otherwise=others))
    return out


def snapshot_datasets(s: Session, snapshot_id: int) -> list[AttachedDataset]:
    rows = s.execute(
        select(Dataset, SnapshotDataset.role)
        .join(SnapshotDataset, SnapshotDataset.dataset_id == Dataset.id)
        .where(SnapshotDataset.snapshot_id == snapshot_id)
        .order_by(SnapshotDataset.id)
    ).all()
    return [AttachedDataset(**_fields(d), role=role) for d, role in rows]


def find_dataset(s: Session, dataset: NewDataset) -> Dataset | None:
    """The row recording exactly the description ``dataset`` gives (registry/dataset_identity.py), if any.

    Never a row that only states the same ``content_hash``: that hash is public, and sharing a row by it would show
    this entry with whatever description someone else recorded for it first."""
    found = s.scalar(select(Dataset).where(Dataset.description_hash == description_hash(dataset)))
    if found is None:
        # a row recorded before precisions were kept describes every bound as its first day, whatever the manifest
        # said: ``2020-06`` and ``2020-06-01`` hashed alike then. Met by the same entry, it is that entry's row
        legacy = dataclasses.replace(dataset, time_start_precision=None, time_end_precision=None)
        found = s.scalar(
            select(Dataset).where(
                Dataset.description_hash == description_hash(legacy),
                Dataset.time_start_precision.is_(None),
                Dataset.time_end_precision.is_(None),
            )
        )
    if found is not None and _precision_unknown(found):
        # the manifest says now what the migration could not know: the row takes its precisions (and the hash
        # they give), as a catalog rebuilt from the records has them
        found.time_start_precision = dataset.time_start_precision if found.time_start else None
        found.time_end_precision = dataset.time_end_precision if found.time_end else None
        found.description_hash = description_hash(dataset)
        s.flush()
    return found


def _precision_unknown(row: Dataset) -> bool:
    """A dated bound of ``row`` without a precision: recorded before migration 0021."""
    return (row.time_start is not None and row.time_start_precision is None) or (
        row.time_end is not None and row.time_end_precision is None
    )


@dataclass(frozen=True)
class AttachedEntry:
    """A dataset of a new attachment: as the catalog has it (exactly as the manifest described it), and whether
    this attachment added its row (no earlier manifest described it alike)."""

    dataset: AttachedDataset
    new: bool


@dataclass(frozen=True)
class Attachment:
    id: int  # the attachment's catalog key
    entries: tuple[AttachedEntry, ...]  # in the manifest's order


def attachment_recorded(s: Session, snapshot_id: int, manifest_id: str, at: dt.datetime) -> bool:
    """Whether manifest ``manifest_id`` is attached to the snapshot with row id ``snapshot_id`` at ``at`` already:
    one attachment, however many catalog records state it (archive/rebuild.py)."""
    found = s.scalar(
        select(DataAttachment.id)
        .where(
            DataAttachment.snapshot_id == snapshot_id,
            DataAttachment.object_id == manifest_id,
            DataAttachment.attached_at == at,
        )
        .limit(1)
    )
    return found is not None


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
    dataset, added unless a row records the same description (``find_dataset``; the same ``content_hash``
    described otherwise is another row). Append-only: nothing recorded before is changed, except
    each dataset's count of snapshots, which grows when this snapshot uses it for the first time. ``at`` is when
    (default now)."""
    at = at or utcnow()
    # Attachments to one snapshot take turns (a row lock on PostgreSQL; SQLite has one writer at a time anyway), so
    # two at once cannot both see a dataset as new to this snapshot and count it twice.
    s.execute(select(Snapshot.id).where(Snapshot.id == snapshot_id).with_for_update())
    q.record_objects(s, [manifest])
    att = DataAttachment(snapshot_id=snapshot_id, object_id=manifest.id, actor=actor, attached_at=at)
    s.add(att)
    s.flush()
    q.add_snapshot_objects(s, snapshot_id, [manifest.id])
    entries = []
    for new in datasets:
        row = find_dataset(s, new)
        created = row is None
        if row is None:
            row = Dataset(
                content_hash=new.content_hash,
                description_hash=description_hash(new),
                name=new.name,
                version=new.version,
                source_url=new.source_url,
                license=new.license,
                size_bytes=new.size_bytes,
                records=new.records,
                tokens=new.tokens,
                time_start=new.time_start,
                time_end=new.time_end,
                time_start_precision=new.time_start_precision if new.time_start else None,
                time_end_precision=new.time_end_precision if new.time_end else None,
                notes=new.notes,
                created_at=at,
            )
            s.add(row)
            s.flush()
        first_use = (
            s.scalar(
                select(SnapshotDataset.id)
                .where(SnapshotDataset.snapshot_id == snapshot_id, SnapshotDataset.dataset_id == row.id)
                .limit(1)
            )
            is None
        )
        s.add(
            SnapshotDataset(snapshot_id=snapshot_id, dataset_id=row.id, attachment_id=att.id, role=new.role)
        )
        if first_use:
            s.execute(
                update(Dataset)
                .where(Dataset.id == row.id)
                .values(snapshot_count=Dataset.snapshot_count + 1)
                .execution_options(synchronize_session=False)
            )
        s.flush()
        entries.append(AttachedEntry(AttachedDataset(**_fields(row), role=new.role), created))
    return Attachment(att.id, tuple(entries))
