"""SQLAlchemy 2 typed models of the catalog. Every change here needs an Alembic migration in migrations/versions.

The schema is this module and two beside it, each imported by the queries that use it: registry/store_models.py
(objects, their references and leases, the store lock, mirrors) and registry/access_models.py (API tokens and the
access policies of gated models). Building a declarative class costs ~2.5 ms of CPU and every command pays for
each one it imports (issue 12): ``modelarc ls`` needs none of those nine tables, a pull or push none of the access
ones. What stays here is every class a relationship reaches, and the tables most commands read. A class that
moves out must have no relationship to or from the classes here, and ``Base.metadata`` is the whole schema only
after ``all_tables()``: Alembic and the schema test call it.
"""

from __future__ import annotations

import datetime as dt
import importlib
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from modelarc.registry.bounds import ROW_ID_MAX
from modelarc.registry.dataset_identity import description_hash_of

if TYPE_CHECKING:
    from sqlalchemy import MetaData

# the modules that hold the rest of the schema (see above)
SCHEMA_MODULES = ("modelarc.registry.store_models", "modelarc.registry.access_models")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


_Row = TypeVar("_Row")


def get_by_id(s: Session, cls: type[_Row], row_id: int) -> _Row | None:
    """``s.get`` for an id from outside (a CLI argument, a cursor, ``token:<id>``): None for an id no row can have
    (registry/bounds.py), where PostgreSQL would raise."""
    return s.get(cls, row_id) if 0 < row_id <= ROW_ID_MAX else None


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


def all_tables() -> MetaData:
    """``Base.metadata`` with every table of the catalog, whichever modules this process has imported so far."""
    for name in SCHEMA_MODULES:
        importlib.import_module(name)
    return Base.metadata


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("namespace", "name", name="uq_models_namespace_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    snapshots: Mapped[list[Snapshot]] = relationship(back_populates="model")
    tags: Mapped[list[Tag]] = relationship(back_populates="model")

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


# A new model equal to an existing one but for case is refused (registry/queries.py ``name_clash``); this index serves
# that lookup and "did you mean". Not unique: archives from before the rule may hold such pairs. An expression index
# (see ix_snapshots_license_created below for what that means on SQLite).
Index("ix_models_lower_name", func.lower(Model.namespace), func.lower(Model.name))


class Snapshot(Base):
    """One immutable archived state of a model; ``digest`` is the manifest's sha256 (``sha256:<hex>``)."""

    __tablename__ = "snapshots"
    __table_args__ = (
        UniqueConstraint("model_id", "digest", name="uq_snapshots_model_digest"),
        Index("ix_snapshots_digest", "digest"),
        Index("ix_snapshots_cutoff", "cutoff"),
        Index("ix_snapshots_created_at", "created_at"),
        Index("ix_snapshots_parameter_count", "parameter_count"),
        Index("ix_snapshots_timeline", "cutoff", "release_date", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    digest: Mapped[str] = mapped_column(String(71))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    logical_bytes: Mapped[int] = mapped_column(BigInteger)
    stored_bytes_added: Mapped[int] = mapped_column(BigInteger, default=0)
    file_count: Mapped[int] = mapped_column(Integer)
    tensor_count: Mapped[int] = mapped_column(Integer)
    parameter_count: Mapped[int] = mapped_column(BigInteger)
    dtypes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # dtype -> parameter count
    architecture: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    model_type: Mapped[str | None] = mapped_column(String(100), index=True)
    cutoff: Mapped[dt.date | None] = mapped_column(Date)
    cutoff_precision: Mapped[str | None] = mapped_column(String(5))  # "year" | "month" | "day"
    license: Mapped[str | None] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    source_url: Mapped[str | None] = mapped_column(Text)
    pushed_by: Mapped[str | None] = mapped_column(String(200))
    release_date: Mapped[dt.date | None] = mapped_column(Date)
    # A tombstoned snapshot keeps its row, manifest, hashes and provenance; only its weights may be freed.
    tombstoned_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    tombstone_reason: Mapped[str | None] = mapped_column(Text)
    # [{model, snapshot, relation}]: parents its first recording declared that this catalog lacked then, so no
    # lineage edge was written (a received snapshot's ``parents_missing``); a later recording of it that finds
    # one of them here adds exactly that edge (registry/recording.py). None: it declared none such.
    unrecorded_parents: Mapped[list[Any] | None] = mapped_column(JSON)

    model: Mapped[Model] = relationship(back_populates="snapshots")
    files: Mapped[list[File]] = relationship(back_populates="snapshot", order_by="File.path")
    signatures: Mapped[list[Signature]] = relationship(back_populates="snapshot")
    parents: Mapped[list[Lineage]] = relationship(
        back_populates="child", foreign_keys="Lineage.child_id", cascade="all, delete-orphan"
    )


# ``--license`` compares case-insensitively; this index serves that comparison newest first, so a rare licence reads
# only its own rows. An expression index: SQLite cannot reflect it, so Alembic's batch mode would drop it if a later
# migration ever rebuilt ``snapshots`` on SQLite (recreate it there), and the migration test compares it on
# PostgreSQL only.
Index("ix_snapshots_license_created", func.lower(Snapshot.license), Snapshot.created_at)


class Lineage(Base):
    """A declared derivation edge: ``child`` was made from ``parent`` by ``relation``."""

    __tablename__ = "lineage"

    child_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), primary_key=True, index=True)
    relation: Mapped[str] = mapped_column(String(40))
    # when the edge was recorded: its child's recording, or later for a declared parent the catalog lacked then
    # (``Snapshot.unrecorded_parents``); ``--as-of`` reads only the edges recorded by then
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    child: Mapped[Snapshot] = relationship(back_populates="parents", foreign_keys=[child_id])
    parent: Mapped[Snapshot] = relationship(foreign_keys=[parent_id])


class Tag(Base):
    """A movable name for a snapshot of one model; every move is kept in ``tag_history``."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_tags_model_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    name: Mapped[str] = mapped_column(String(200))
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    model: Mapped[Model] = relationship(back_populates="tags")
    snapshot: Mapped[Snapshot] = relationship()


class TagHistory(Base):
    __tablename__ = "tag_history"
    __table_args__ = (
        # moved_at too, so "superseded by a later move by then" (``--as-of``) is answered from the index alone
        Index("ix_tag_history_model_tag_moved", "model_id", "tag", "id", "moved_at"),
        Index("ix_tag_history_new_snapshot", "new_snapshot_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    tag: Mapped[str] = mapped_column(String(200))
    old_snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id"))
    new_snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"))
    moved_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str | None] = mapped_column(String(200))


class File(Base):
    __tablename__ = "files"
    __table_args__ = (UniqueConstraint("snapshot_id", "path", name="uq_files_snapshot_path"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"))
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(20))

    snapshot: Mapped[Snapshot] = relationship(back_populates="files")
    tensors: Mapped[list[TensorRow]] = relationship(back_populates="file")


class TensorRow(Base):
    """One tensor of a safetensors file; ``digest`` identifies its bytes (sha256 over its chunk ids)."""

    __tablename__ = "tensors"

    id: Mapped[int] = mapped_column(primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"), index=True)
    name: Mapped[str] = mapped_column(Text)
    dtype: Mapped[str] = mapped_column(String(16))
    shape: Mapped[list[Any]] = mapped_column(JSON)
    offset: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(64), index=True)

    file: Mapped[File] = relationship(back_populates="tensors")


class SigningKey(Base):
    __tablename__ = "keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    public_pem: Mapped[str] = mapped_column(Text)
    label: Mapped[str | None] = mapped_column(String(200))
    trusted: Mapped[bool] = mapped_column(Boolean, default=True)
    is_local: Mapped[bool] = mapped_column(Boolean, default=False)  # the private half lives in this home
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Signature(Base):
    __tablename__ = "signatures"

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("keys.id"))
    object_id: Mapped[str] = mapped_column(String(64))  # the bundle, stored as an object too
    bundle: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    snapshot: Mapped[Snapshot] = relationship(back_populates="signatures")
    key: Mapped[SigningKey] = relationship()


class AuditEvent(Base):
    """Append-only: rows are inserted, never updated or deleted."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(40), index=True)
    target: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Dataset(Base):
    """One description of a training/eval dataset, shared by the snapshots whose manifests describe it alike.

    Deduplicated by ``description_hash`` (registry/dataset_identity.py), not by ``content_hash``: several rows may
    state one data hash under different descriptions, and each snapshot is linked to the one its manifest gave.
    """

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("description_hash", name="uq_datasets_description_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # the sha256 the manifest stated for the data, else a hash of the description without role and notes
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    # what identifies the row: computed from the recorded fields on every insert (also one that names none of it)
    description_hash: Mapped[str] = mapped_column(
        String(64), default=lambda ctx: description_hash_of(ctx.get_current_parameters())
    )
    name: Mapped[str] = mapped_column(String(300), index=True)
    version: Mapped[str | None] = mapped_column(String(200))
    source_url: Mapped[str | None] = mapped_column(Text)
    license: Mapped[str | None] = mapped_column(String(200))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    records: Mapped[int | None] = mapped_column(BigInteger)
    tokens: Mapped[int | None] = mapped_column(BigInteger)
    # when the content was written: the first day of the period the manifest named (``2020-06`` is 2020-06-01),
    # with that period's precision beside it, as snapshots keep ``cutoff``; NULL precision only for a NULL bound
    time_start: Mapped[dt.date | None] = mapped_column(Date)
    time_end: Mapped[dt.date | None] = mapped_column(Date)
    time_start_precision: Mapped[str | None] = mapped_column(String(5))  # "year" | "month" | "day"
    time_end_precision: Mapped[str | None] = mapped_column(String(5))
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # How many distinct snapshots use it, kept by attach_datasets (the only writer of snapshot_datasets, which is
    # append-only): a page of ``data ls`` reads it instead of counting every user of every dataset on the page.
    snapshot_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class DataAttachment(Base):
    """One training-data manifest attached to a snapshot (at push or later); append-only."""

    __tablename__ = "data_attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    object_id: Mapped[str | None] = mapped_column(
        String(64)
    )  # the manifest document as given, kept in the store
    attached_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))


class SnapshotDataset(Base):
    """Which datasets a snapshot was trained or evaluated on, and in what role."""

    __tablename__ = "snapshot_datasets"
    __table_args__ = (Index("ix_snapshot_datasets_dataset", "dataset_id", "snapshot_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"))
    attachment_id: Mapped[int] = mapped_column(ForeignKey("data_attachments.id"))
    role: Mapped[str] = mapped_column(String(20))


class RunRecord(Base):
    """A recorded inference run: what was run (snapshot, prompt, parameters), what came out, on what; signed."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)  # prompt, parameters, output, versions, hardware
    object_id: Mapped[str | None] = mapped_column(String(64))  # the canonical record, kept in the store
    signature: Mapped[str | None] = mapped_column(Text)  # DSSE envelope JSON over the canonical record
    key_fingerprint: Mapped[str | None] = mapped_column(String(64))


class CatalogSetting(Base):
    """One named value the catalog keeps about itself; ``store_id`` is the identity of the store its rows describe
    (archive/store_identity.py), so a catalog is never paired with another store's objects."""

    __tablename__ = "catalog_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
