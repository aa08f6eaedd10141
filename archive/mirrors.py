"""Mirrors: other stores (a folder, an S3 bucket) or served archives that hold a verified copy of every
catalogued object.

Lots of copies keep stuff safe (LOCKSS): a mirror uses the store's own key layout, so it is itself a complete
store; `repair` takes good copies back from it. A sync copies what the mirror lacks, each object decoded and
re-hashed against its id before it is written there (a damaged primary copy is never propagated: it is reported
for `repair` instead), in parallel, and is resumable by running it again: it copies only what is still missing. A served archive (``remote:NAME``, a
remote added with ``modelarc remote add``) is kept in step snapshot by snapshot instead (archive/remote/mirror.py).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from modelarc.archive.records import RECORDS_PREFIX, read_record_bytes
from modelarc.errors import (
    DeltaBaseError,
    MirrorUnreachableError,
    ModelarcError,
    ObjectCorruptError,
    ObjectMissingError,
    RecordError,
    RemoteError,
    StoreAccessError,
    StoredValueError,
    StoreWriteLostError,
    UnsupportedObjectError,
    UsageError,
)
from modelarc.registry import integrity as rows
from modelarc.registry import queries as q
from modelarc.registry.integrity import MirrorRecord
from modelarc.storage import ObjectId, ObjectStore
from modelarc.storage.backend import Backend
from modelarc.storage.location import canonical_location, is_local_location, location_within, open_backend
from modelarc.storage.store import delta_base_of, object_key

if TYPE_CHECKING:
    from modelarc.archive.remote.mirror import RemoteMirror
    from modelarc.archive.repository import Archive
    from modelarc.archive.store_lock import StoreLockHandle

MIRROR_TEMP_AGE = 3600.0  # seconds untouched after which a mirror's temp file is a killed writer's debris
REMOTE_TARGET = "remote:"  # a served archive, by the name `modelarc remote add` gave it


def is_remote_target(target: str) -> bool:
    return target.startswith(REMOTE_TARGET)


def remote_mirror(archive: Archive, target: str) -> RemoteMirror:
    # imported here: the HTTP client (httpx) is for served mirrors only, not every mirror command
    from modelarc.archive.remote.mirror import RemoteMirror

    return RemoteMirror(archive, target)

Progress = Callable[[int], None]


class MirrorCopy(Protocol):
    """What scrub and repair read from a mirror: an object as stored, and decoded and verified."""

    def get_stored(self, oid: ObjectId) -> bytes: ...

    def get(self, oid: ObjectId) -> bytes | bytearray: ...

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class MirrorState:
    name: str
    target: str
    objects_behind: int  # catalogued objects the mirror lacks, counted by listing it now
    synced_at: str | None
    verified_at: str | None
    objects_copied: int
    error: str | None = None  # the mirror could not be listed

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SyncReport:
    mirror: str
    objects_copied: int = 0
    bytes_copied: int = 0
    already_there: int = 0
    not_copied: dict[str, str] = field(default_factory=dict)  # object id -> why (bad primary copy)
    records_copied: int = 0  # catalog records (archive/records.py), so the mirror alone can rebuild a catalog
    unreachable: str | None = None  # why the mirror could not be opened (nothing was copied)
    snapshots_copied: int = 0  # a served mirror: snapshots (or tags) committed there by this sync
    snapshots_refused: dict[str, str] = field(default_factory=dict)  # label -> why the served mirror refused it
    snapshots_withdrawn: list[str] = field(default_factory=list)  # not sent to a served mirror: not handed out
    # with ``read_data``: object id -> where the mirror's damaged copy, replaced by a verified one, now is there
    replaced: dict[str, str] = field(default_factory=dict)
    temp_removed: int = 0  # temp files (a folder) or unfinished uploads (S3) that killed syncs left in the mirror
    # a served mirror: each access policy this sync changed there ({"model", "target", "before", "after"}), and the
    # models whose policies it refused to take (why): their weights may be handed out there as they are not here
    policies_changed: list[dict[str, Any]] = field(default_factory=list)
    policies_refused: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.not_copied or self.snapshots_refused or self.unreachable or self.policies_refused)

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def mirror_store(target: str, *, create: bool = False) -> ObjectStore:
    """The store mirror at ``target``. Only ``mirror add`` passes ``create``: to any other command a missing folder
    is an unmounted disk, and made again it would sit on the disk that holds the mount point, take a sync's or a
    repair's copies there, and be called whole."""
    return ObjectStore(open_backend(target, create=create))


def _unreachable(record: MirrorRecord, why: object) -> MirrorUnreachableError:
    return MirrorUnreachableError(f"mirror {record.name} at {record.target} is unreachable: {why}")


def open_store_mirror(record: MirrorRecord) -> ObjectStore:
    """The folder or bucket mirror ``record`` names, answering now; ``MirrorUnreachableError`` naming it and its
    target otherwise (a missing folder is never made again)."""
    try:
        store = mirror_store(record.target)
    except StoreAccessError:
        if not is_local_location(record.target):
            raise
        raise _unreachable(
            record,
            f"no folder there (an unmounted disk?); it is not made again: mount it, or `modelarc mirror rm "
            f"{record.name}`",
        ) from None
    if is_local_location(record.target) and _empty_folder(record.target):
        raise _unreachable(
            record,
            "the folder there is empty, and a mirror `mirror add` made never is (an unmounted disk's mount "
            f"point?); nothing is copied into it: mount the disk, or `modelarc mirror rm {record.name}`",
        )
    try:
        next(iter(store.iter_ids()), None)  # a bucket that is gone or refuses us fails here, not half-way
    except (StoreAccessError, OSError) as exc:
        raise _unreachable(record, exc) from None
    return store


def _empty_folder(target: str) -> bool:
    """A mirror folder holds at least its ``tmp/`` from `mirror add`; an empty one is a mount point whose disk is
    not mounted, and a sync would fill the disk that holds the mount point instead."""
    try:
        with os.scandir(target) as entries:
            return next(entries, None) is None
    except OSError:
        return False  # unreadable: iter_ids below says why


def _open_remote_mirror(archive: Archive, record: MirrorRecord) -> RemoteMirror:
    remote = remote_mirror(archive, record.target)
    try:
        remote.probe()
    except (RemoteError, StoreAccessError) as exc:
        remote.close()
        raise _unreachable(record, exc) from None
    return remote


def open_mirror(archive: Archive, record: MirrorRecord) -> MirrorCopy:
    """The mirror ``record`` names, for reading objects back: a store, or a served archive (``remote:NAME``);
    ``MirrorUnreachableError`` if it does not answer now."""
    if is_remote_target(record.target):
        return _open_remote_mirror(archive, record)
    return open_store_mirror(record)


def open_mirrors(
    archive: Archive, records: list[MirrorRecord]
) -> tuple[list[tuple[str, MirrorCopy]], dict[str, str]]:
    """Each mirror that answers, by name, and why each other one does not: scrub and repair go on with the rest
    and count the others as failures."""
    opened: list[tuple[str, MirrorCopy]] = []
    unreachable: dict[str, str] = {}
    for record in records:
        try:
            opened.append((record.name, open_mirror(archive, record)))
        except MirrorUnreachableError as exc:
            unreachable[record.name] = str(exc)
    return opened, unreachable


def check_reachable(archive: Archive, records: list[MirrorRecord]) -> None:
    """Before a push that syncs ``records``: a mirror that does not answer is refused before a byte is archived,
    like an unknown one, rather than found missing after."""
    for record in records:
        try:
            if is_remote_target(record.target):
                _open_remote_mirror(archive, record).close()
            else:
                open_store_mirror(record)
        except MirrorUnreachableError as exc:
            raise MirrorUnreachableError(f"{exc}; nothing was archived") from None


def served_objects(archive: Archive, *, bases: bool = True) -> dict[str, int]:
    """What a served mirror must hold: the objects of every snapshot not withdrawn (withdrawn ones are not sent),
    with the bases of their deltas (a withdrawn parent's chunks among them), or without them (``bases=False``:
    what it hands back to a mirror token; rows.live_snapshot_sizes)."""
    with archive.catalog.session() as s:
        return rows.live_snapshot_sizes(s, bases=bases)


def _lacks(archive: Archive, record: MirrorRecord, wanted: dict[str, int]) -> int:
    if is_remote_target(record.target):
        remote = remote_mirror(archive, record.target)
        try:
            return len(remote.lacks(served_objects(archive)))
        finally:
            remote.close()
    # `mirror ls` shows a missing folder as an error, never makes one
    have = set(open_store_mirror(record).iter_ids())
    return len(set(wanted) - have)


def add_mirror(archive: Archive, name: str, target: str) -> MirrorRecord:
    if not _NAME.fullmatch(name):
        raise UsageError(f"invalid mirror name {name!r}: letters, digits, '.', '_' or '-', up to 100")
    if name == "all":  # `push --mirror all` means every mirror: a mirror of that name would be passed over there
        raise UsageError("'all' is not a mirror name: `push --mirror all` means every mirror; choose another")
    if not target:
        raise UsageError("empty mirror target: name a folder, s3://BUCKET/PREFIX or remote:NAME")
    with archive.catalog.session() as s:
        if name in {m.name for m in rows.list_mirrors(s)}:  # refused before the target is probed (or created)
            raise UsageError(f"a mirror named {name!r} already exists (modelarc mirror rm {name} first)")
    if is_remote_target(target):
        location = target
        remote = remote_mirror(archive, target)  # a remote added with `modelarc remote add`
        try:
            remote.probe()  # it answers, as an archive, before we record it
        finally:
            remote.close()
    else:
        location = canonical_location(target)
        check_mirror_target(archive, target, location)
        # it answers (and a new folder exists) before we record it: the one place a mirror's folder is made
        next(iter(mirror_store(location, create=True).iter_ids()), None)
    with archive.catalog.session() as s:
        record = rows.add_mirror(s, name, location)
        q.audit(s, archive.settings.actor, "mirror add", name, location=location)
    return record


def check_mirror_target(archive: Archive, target: str, location: str) -> None:
    """Refuse a mirror that overlaps the archive: its own store, a folder inside that store or inside the home (the
    store would list the mirror's copies as its own objects, and gc and fsck would never agree with it again), or
    a folder that holds the store."""
    store = canonical_location(archive.settings.store_location)
    if location_within(location, store) and location_within(store, location):
        raise UsageError(f"{target} is this archive's own store, not a mirror")
    if location_within(location, store):
        raise UsageError(f"{target} is inside this archive's store {store}; a mirror must be a place of its own")
    if location_within(store, location):
        raise UsageError(f"{target} holds this archive's store {store}; a mirror must be a place of its own")
    home = str(archive.settings.home)
    if location_within(location, home):
        raise UsageError(f"{target} is inside this archive's home {home}; a mirror must be a place of its own")


def remove_mirror(archive: Archive, name: str) -> MirrorRecord:
    """Forget a mirror; its copies stay where they are."""
    with archive.catalog.session() as s:
        record = rows.remove_mirror(s, name)
        q.audit(s, archive.settings.actor, "mirror rm", name, location=record.target)
    return record


def mirrors(archive: Archive, name: str | None = None) -> list[MirrorRecord]:
    with archive.catalog.session() as s:
        return [rows.get_mirror(s, name)] if name else rows.list_mirrors(s)


def catalogued_objects(archive: Archive) -> dict[str, int]:
    """Every object the catalog records as durable, with its stored size: what a mirror must hold."""
    with archive.catalog.session() as s:
        return rows.catalogued_sizes(s)


def states(archive: Archive) -> list[MirrorState]:
    wanted = catalogued_objects(archive)
    out = []
    for m in mirrors(archive):
        try:
            behind, error = _lacks(archive, m, wanted), None
        except Exception as exc:  # an unreachable mirror is a state to show, not a reason to stop listing
            behind, error = -1, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        out.append(
            MirrorState(
                m.name,
                m.target,
                behind,
                _iso(m.synced_at),
                _iso(m.verified_at),
                m.objects_copied,
                error,
            )
        )
    return out


def sync(
    archive: Archive,
    record: MirrorRecord,
    *,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
    read_data: bool = False,
) -> SyncReport:
    """Copy every catalogued object the mirror lacks; each verified against its id before it is written.

    ``read_data`` also re-reads every copy the mirror has (a store mirror; a served archive keeps its own) and
    replaces each that does not read back intact, its damaged copy set aside in the mirror's ``quarantine/``, as
    ``repair`` does in the primary: what `scrub --mirrors` finds there, no other command mends."""
    report = SyncReport(record.name)
    if is_remote_target(record.target):
        from modelarc.archive.remote.mirror import sync_to_remote

        remote = remote_mirror(archive, record.target)
        try:
            with archive.lock(exclusive=False, purpose="mirror sync"):
                wanted = served_objects(archive)
                sync_to_remote(archive, remote, wanted, report, progress=progress, on_total=on_total)
        finally:
            remote.close()
        _mark_synced(archive, record, report)
        return report
    check_mirror_target(archive, record.target, record.target)  # one added before these checks existed
    try:
        target = open_store_mirror(record)
    except MirrorUnreachableError as exc:  # the other mirrors are still synced; the caller counts this one
        report.unreachable = str(exc)
        return report
    with archive.lock(exclusive=False, purpose="mirror sync") as held, _lost_write_named(record, held):
        # what a killed sync left half-written there: nothing else removes it (gc cleans the primary's own tmp/).
        # Only debris untouched for an hour goes, so a sync running at this moment keeps its files (a writer's
        # temp file is written continuously, and no object takes an hour).
        report.temp_removed = target.clean_tmp(time.time() - MIRROR_TEMP_AGE)
        wanted = catalogued_objects(archive)
        have = set(target.iter_ids())
        damaged = {oid for oid in sorted(set(wanted) & have) if not target.reads_back(ObjectId(oid))} if read_data else set()
        todo = sorted(oid for oid in wanted if oid not in have or oid in damaged)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        report.already_there = len(wanted) - len(todo)
        if on_total:
            on_total(sum(wanted[oid] for oid in todo))
        lock = threading.Lock()

        def copy(oid: str) -> None:
            try:
                blob = archive.store.get_stored(ObjectId(oid))
                # raises unless it hashes to its id (a delta: read with its base from this store)
                ObjectStore.decode_stored(ObjectId(oid), blob, fetch_base=archive.store.get_stored)
            except (ObjectCorruptError, ObjectMissingError, DeltaBaseError, UnsupportedObjectError) as exc:
                with lock:  # (one this modelarc cannot read is not copied unverified: a newer one syncs it)
                    report.not_copied[oid] = str(exc)
                return
            if oid in damaged and not target.holds(ObjectId(oid), blob):  # (a delta whose base is what is damaged: kept)
                try:
                    aside = target.quarantine(ObjectId(oid), stamp)
                except (StoredValueError, OSError) as exc:  # a non-empty folder under its key
                    with lock:
                        report.not_copied[oid] = f"the mirror's damaged copy could not be replaced: {exc}"
                    return
                with lock:
                    report.replaced[oid] = aside or ""
            target.backend.put(object_key(ObjectId(oid)), blob)
            with lock:
                report.objects_copied += 1
                report.bytes_copied += len(blob)
            if progress:
                progress(wanted[oid])

        workers = max(4, archive.store.backend.concurrency, target.backend.concurrency)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelarc-mirror") as pool:
            for fut in [pool.submit(copy, oid) for oid in todo]:
                fut.result()
        report.records_copied = copy_records(archive.store.backend, target.backend, report.not_copied)
        target.sync()  # durable there before the catalog says the mirror is in step
    _mark_synced(archive, record, report)
    return report


@contextmanager
def _lost_write_named(record: MirrorRecord, held: StoreLockHandle) -> Iterator[None]:
    """A temp file of this sync removed from the mirror before its rename (an S3 mirror: its upload aborted):
    another sync's cleanup of debris untouched for ``MIRROR_TEMP_AGE`` took it, so this one was paused that long.
    Said as push says its own: the lost store lock (``LockLostError``, exit 8) when the pause outlasted it too, which
    it does unless the lock's expiry is set above an hour; else ``StoreWriteLostError`` naming the mirror (storage's
    own message blames the primary's gc, which never touches a mirror)."""
    try:
        with held.explains_lost_writes():
            yield
    except StoreWriteLostError as exc:
        raise StoreWriteLostError(
            f"mirror {record.name} at {record.target}: a temp file this sync wrote there was removed before its "
            f"rename: another `mirror sync` removes those untouched for {MIRROR_TEMP_AGE / 3600:.0f} h, so this one "
            "was paused or stalled that long; nothing was stored under its key; run the command again"
        ) from exc


def _mark_synced(archive: Archive, record: MirrorRecord, report: SyncReport) -> None:
    with archive.catalog.session() as s:
        rows.mark_synced(s, record.name, report.objects_copied)
        q.audit(
            s,
            archive.settings.actor,
            "mirror sync",
            record.name,
            objects_copied=report.objects_copied,
            not_copied=len(report.not_copied),
            snapshots_refused=len(report.snapshots_refused),
        )


def copy_records(source: Backend, target: Backend, not_copied: dict[str, str]) -> int:
    """Copy every catalog record ``target`` lacks, each re-hashed against the sha256 in its name first (a damaged
    one is put in ``not_copied``, never propagated); how many were copied. Records are small: many at once."""
    todo = sorted(set(source.iterate(RECORDS_PREFIX)) - set(target.iterate(RECORDS_PREFIX)))

    def copy(key: str) -> bool:
        try:
            body = read_record_bytes(source, key)
        except RecordError as exc:
            not_copied[key] = str(exc)
            return False
        target.put(key, body)
        return True

    workers = max(4, source.concurrency, target.concurrency)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelarc-mirror") as pool:
        return sum(pool.map(copy, todo))


def good_copies(
    stores: list[tuple[str, MirrorCopy]], oid: str, *, delta_against: str | None = None
) -> Iterator[tuple[str, bytes]]:
    """Each mirror's copy of ``oid`` that decodes and hashes to its id, in mirror order, as (mirror name, a blob for
    the primary to store): the mirror's blob as stored, unless it is a delta against any base but
    ``delta_against``, when it is decoded with the mirror's base and encoded on its own.

    Why not the mirror's delta as it is: its base is the mirror's choice (a served archive stores a fine-tune as a
    delta against a parent the primary may lack or hold for another model; a planted one can name any object), and
    the primary's catalog records no snapshot keeping that base, so gc or a withdrawal would delete it and break
    the object. ``delta_against`` is the base the primary's catalog records for ``oid``: that dependency is
    already kept. Any refusal from one mirror (a served one busy, withholding gated weights from a token that is
    not an admin's, unreachable) is that mirror's failure for this object only: the others are still asked."""
    for name, store in stores:
        try:
            blob = store.get_stored(ObjectId(oid))
            if delta_against is not None and delta_base_of(ObjectId(oid), blob) == delta_against:
                ObjectStore.decode_stored(ObjectId(oid), blob, fetch_base=store.get_stored)  # the mirror's base
            else:
                blob = ObjectStore.standalone_of(ObjectId(oid), blob, fetch_base=store.get_stored)
        except (ModelarcError, OSError):
            continue
        yield name, blob


def _iso(when: Any) -> str | None:
    return None if when is None else when.isoformat(timespec="seconds") + "Z"
