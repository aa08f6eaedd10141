"""The catalog's rows about the object store: which objects are durable, which snapshots need them, leases of
objects in flight, the store lock, and the mirrors. Part of the schema in registry/models.py (see there why these
live in a module of their own); every change needs an Alembic migration in migrations/versions."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from modelarc.registry.models import Base, utcnow


class StoredObject(Base):
    """An object known to be durable in the store (rows are written only after the object is synced)."""

    __tablename__ = "objects"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    raw_size: Mapped[int] = mapped_column(BigInteger)
    stored_size: Mapped[int] = mapped_column(BigInteger)
    codec: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # codec 3 (delta): the object it decodes against, as its header says; and what it would take stored on its own,
    # when the push that wrote it measured that (None for objects received from elsewhere)
    delta_base: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    standalone_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # scrub (archive/scrub.py): when the object was last re-read and re-hashed, and what that found
    verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True, default=None)
    # indexed (0019): a push asks which of its objects were found bad, repair asks for all of them
    # widened (0020) for 'unsupported'
    last_check: Mapped[str | None] = mapped_column(String(16), index=True, default=None)  # integrity.CHECKS


class SnapshotObject(Base):
    """Which objects a snapshot needs (chunks, its manifest and its signatures): the reference set for gc/fsck."""

    __tablename__ = "snapshot_objects"

    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"), primary_key=True)
    object_id: Mapped[str] = mapped_column(ForeignKey("objects.id"), primary_key=True, index=True)
    # True: the snapshot needs the object only as the base of one of its delta objects, not as its own content
    as_base: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class ObjectLease(Base):
    """An object a transfer in flight relies on: uploaded (or found present) but not yet in a committed snapshot.

    gc and withdrawal keep every object with an unexpired lease, so a pusher on another machine can upload for
    an hour and then commit; a lease that is never committed expires and its objects become garbage again.
    """

    __tablename__ = "object_leases"

    object_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(
        String(200), primary_key=True
    )  # the pusher: token:<id>:<name> or actor
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)
    # the holder sent the object's bytes itself (not merely found it present): it may send deltas against it
    uploaded: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class StoreLock(Base):
    """A holder of the store lock (registry/store_locks.py): shared for transfers, exclusive for gc and deletions.

    It lives in the catalog, not beside the objects, because the catalog is the one thing every host of a
    deployment shares with transactions; an object store such as S3 has no lock primitive to build on.
    """

    __tablename__ = "store_locks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    exclusive: Mapped[bool] = mapped_column(Boolean)
    purpose: Mapped[str] = mapped_column(String(60))
    actor: Mapped[str] = mapped_column(String(200))
    machine: Mapped[str] = mapped_column(
        String(200)
    )  # host name / machine id, boot id, PID namespace: where `pid` means something (store_locks.machine_label)
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime, index=True)


class Mirror(Base):
    """Another store that holds a copy of every object (archive/mirrors.py): a folder or an S3 bucket."""

    __tablename__ = "mirrors"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    target: Mapped[str] = mapped_column(String(1000))
    added_at: Mapped[dt.datetime] = mapped_column(DateTime)
    synced_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)
    objects_copied: Mapped[int] = mapped_column(BigInteger, default=0)  # by all syncs together
    verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime, default=None)  # last scrub --mirrors


class WrittenRecord(Base):
    """A catalog record this archive wrote (archive/records.py), noted in the transaction of the change it records:
    what `repair` may put back from any mirror. A record a mirror holds without a note here may have been planted
    there by anyone who can write to the mirror (its name is just the sha256 of its body), so repair takes it only
    from a mirror the user names (docs/FORMAT.md "Catalog records")."""

    __tablename__ = "written_records"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)  # records/<time>-<sha256>.json
