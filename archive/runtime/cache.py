"""The load cache: a verified, byte-identical copy of a snapshot's safetensors files, kept for repeated loads.

``load_model(..., cache=True)`` decodes a snapshot once into this folder and memory-maps the copy on every later
load, as the Hugging Face Hub cache serves ``from_pretrained``. Layout (docs/ARCHITECTURE.md, "Load cache")::

    <cache>/entries/<64 hex of the snapshot id>/entry.json     what was written, and the stat of every file
    <cache>/entries/<64 hex of the snapshot id>/last-used      empty; its mtime is the entry's last use (LRU)
    <cache>/entries/<64 hex of the snapshot id>/files/<path>   the snapshot's safetensors files, byte-identical
    <cache>/tmp/fill-<uuid>/  trash-<uuid>/                    an entry being filled, or being removed

An entry is per snapshot id, never per tag (tags move; an id names the same bytes for ever, in any archive, so one
cache folder may serve several archives). It is filled in a temp folder by ``restore_file`` with every file hashed
whole against the manifest's sha256, fsynced, and renamed into place in one step: an entry either exists complete
and verified or not at all. Two processes filling the same entry both write; the second rename fails and that
process removes its own temp folder and uses the winner's entry.

What a later load trusts, and why: re-hashing the files at every load would cost several times the load itself
(sha256 measured at 610 MB/s on the shared 2-core machine: 0.55 s for a 336 MB model, 1.1 s for 672 MB, whose cached
loads take 0.09-0.13 s before the forward), so a load trusts the sha256 checked when the
entry was written plus the stat of every file recorded then: size, mtime, ctime and inode. ctime cannot be set
from user space, so any write to a file, even one that puts its mtime back, changes it; so does a copy or a
restore from a backup. The stat is taken from the open file that is then mapped, so what is checked is what is
used. Any difference (or an unreadable entry.json, or an entry that does not list exactly the manifest's files
with their sizes and sha256) discards the whole entry, and the load rebuilds it. What this does not catch is
silent corruption of the disk under an unchanged inode (bit rot); ``modelarc cache clear`` and a rebuild is the
remedy, as for the Hub cache.

Who may have written it: a cache folder can be shared (MODELARC_CACHE_DIR on a shared disk), and an entry whose
files and entry.json someone else wrote would be self-consistent, stat and all. So a load uses an entry only if
entry.json and every file are regular files that no group or other user may write, owned by this user or root
(a cache on a read-only mount serves loads when root or this user filled it). Fills make their files read-only
(0444) whatever the umask. An entry that fails this is removed if this process may remove it, and otherwise left
alone and not used: the load decodes from the store, with a warning.

Removing an entry (eviction, ``cache clear``, a discarded entry) renames it into ``tmp/`` first and deletes it
there, so no process ever sees half an entry (a withdrawal also deletes a ``tmp/trash-*`` of its snapshot that a
killed removal left: ``purge_trash``); a process that mapped its files keeps its mapping (POSIX: the
inode lives until the last mapping goes). An entry this process may not remove (another user's in a shared
folder, EACCES/EPERM/EROFS) is passed by: eviction still counts its bytes, ``clear`` reports it as left; a load
never fails on it. A folder in ``entries/`` that is no readable entry counts too, by its bytes on disk (links not
followed), and eviction removes it first (it can never be served), if it is this user's.

This module imports no torch: ``modelarc cache ls/clear`` use it; ``loading.py`` maps the files into tensors.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from modelarc.archive.manifest import FileEntry, SnapshotManifest
from modelarc.config import Settings
from modelarc.errors import DestinationError, UsageError
from modelarc.registry.refs import SnapshotId

if TYPE_CHECKING:
    from modelarc.storage import ObjectStore

CACHE_FORMAT = "modelarc.load-cache"
CACHE_VERSION = 1
ENTRY_FILE = "entry.json"
USED_FILE = "last-used"
FILES = "files"
# entry.json lists one line per safetensors file; this is far past any real snapshot
MAX_ENTRY_JSON = 64 << 20
# what removing another user's entry (a shared folder) or one on a read-only mount fails with: left, not an error
_NOT_OURS = (errno.EACCES, errno.EPERM, errno.EROFS)


@dataclass(frozen=True)
class CachedFile:
    """One cached file: the manifest's path, size and sha256, and the stat recorded when it was written."""

    path: str
    size: int
    sha256: str
    mtime_ns: int
    ctime_ns: int
    inode: int

    def matches(self, st: os.stat_result) -> bool:
        return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) == (
            self.size,
            self.mtime_ns,
            self.ctime_ns,
            self.inode,
        )


@dataclass(frozen=True)
class CacheEntry:
    snapshot: SnapshotId
    model: str  # the model it was filled for (a snapshot id may belong to several; this is for people)
    folder: Path
    files: tuple[CachedFile, ...]
    created: float  # seconds since the epoch
    last_used: float

    @property
    def bytes(self) -> int:
        """What the entry counts against the cap: its files' sizes (entry.json is a few hundred bytes more)."""
        return sum(f.size for f in self.files)

    def file_path(self, path: str) -> Path:
        return self.folder.joinpath(FILES, *path.split("/"))


@dataclass(frozen=True)
class UnreadableEntry:
    """A folder in ``entries/`` that is no entry (entry.json missing, damaged or of another version; a link to no
    entry): it is never served, but its bytes are on disk, so they count against the cap, and eviction removes it
    before any readable entry."""

    folder: Path
    bytes: int  # on disk, links not followed (a link itself: 0, its target is not this cache's)
    mine: bool  # the folder (or link) is this user's: only then may eviction remove it


@dataclass(frozen=True)
class CacheListing:
    folder: Path
    max_bytes: int | None
    entries: tuple[CacheEntry, ...]  # least recently used first
    temp_folders: int  # fills in progress, or left by a process that died
    temp_bytes: int
    unreadable: tuple[UnreadableEntry, ...] = ()

    @property
    def bytes(self) -> int:
        """What counts against the cap: the entries' files and every unreadable entry's bytes."""
        return sum(e.bytes for e in self.entries) + sum(u.bytes for u in self.unreadable)


@dataclass(frozen=True)
class CacheClearing:
    """What ``LoadCache.clear`` did: the entries removed, every byte freed (entries, temp folders, unreadable
    entries), and what it had to leave: entries or temp folders another user wrote in a shared folder, or on a
    read-only mount."""

    removed: tuple[CacheEntry, ...]
    bytes_freed: int
    left: tuple[Path, ...]


@dataclass(frozen=True)
class CachePurge:
    """What ``purge_snapshot`` did in each cache folder: the entry folders removed and their bytes, and the ones
    left, each with why (``Permission denied``, ``Read-only file system``; a link, whose target is never followed)."""

    removed: tuple[Path, ...]
    bytes_freed: int
    left: tuple[tuple[Path, str], ...]


def weight_files(manifest: SnapshotManifest) -> list[FileEntry]:
    """The files a cache entry holds: every safetensors file (tensors live nowhere else a load reads them from)."""
    return [f for f in manifest.files if f.kind == "safetensors"]


class LoadCache:
    """The cache folder. Every method is safe against other processes using the same folder at the same time."""

    def __init__(self, folder: Path, max_bytes: int | None = None) -> None:
        self.folder = folder
        self.max_bytes = max_bytes

    @classmethod
    def of(cls, settings: Settings) -> LoadCache:
        return cls(settings.cache_path, settings.cache_max_bytes)

    @property
    def _entries(self) -> Path:
        return self.folder / "entries"

    @property
    def _tmp(self) -> Path:
        return self.folder / "tmp"

    def _entry_folder(self, snapshot: SnapshotId) -> Path:
        return self._entries / snapshot.hex

    # -- reading ---------------------------------------------------------------------------------------------

    def entry(self, snapshot: SnapshotId) -> CacheEntry | None:
        """The entry as its entry.json describes it, or None if there is none or it cannot be read."""
        return _read_entry(self._entry_folder(snapshot))

    def entries(self) -> list[CacheEntry]:
        """Every readable entry, least recently used first."""
        try:
            names = sorted(os.listdir(self._entries))
        except FileNotFoundError:
            return []
        found = [e for e in (_read_entry(self._entries / n) for n in names) if e is not None]
        return sorted(found, key=lambda e: (e.last_used, e.snapshot))

    def unreadable_entries(self, readable: list[CacheEntry]) -> list[UnreadableEntry]:
        """Every folder in ``entries/`` that is not one of ``readable`` (what ``entries()`` listed) and still
        reads as no entry: one a fill renamed into place since that listing is readable, and not listed here."""
        listed = {e.folder for e in readable}
        found = []
        for path in _own_children(self._entries, _ENTRY_NAME):
            if path in listed or _read_entry(path) is not None:
                continue
            try:
                st = os.lstat(path)  # the folder, or the link itself: never its target
            except FileNotFoundError:
                continue  # removed meanwhile
            found.append(UnreadableEntry(path, _own_bytes(path), st.st_uid == os.geteuid()))
        return found

    def listing(self) -> CacheListing:
        temp = _own_children(self._tmp, _TEMP_NAME)
        entries = self.entries()
        return CacheListing(
            folder=self.folder,
            max_bytes=self.max_bytes,
            entries=tuple(entries),
            temp_folders=len(temp),
            temp_bytes=sum(_tree_bytes(p) for p in temp),
            unreadable=tuple(self.unreadable_entries(entries)),
        )

    def open_files(self, snapshot: SnapshotId, manifest: SnapshotManifest) -> dict[str, BinaryIO] | None:
        """The entry's files, open for reading and checked against what was recorded when they were written, by
        manifest path; None when there is no usable entry (a damaged one is removed here). The caller closes them.

        Checked: entry.json lists exactly the manifest's safetensors files with their sizes and sha256, and every
        open file's size, mtime, ctime and inode are the ones recorded (fstat of the open file: what is checked is
        what the caller maps).
        """
        entry = _read_entry(self._entry_folder(snapshot), trusted_only=True)
        if entry is None:
            if self._entry_folder(snapshot).exists():  # entry.json missing, unreadable or untrusted
                self._discard_if_allowed(snapshot)
            return None
        expected = sorted((f.path, f.size, f.sha256) for f in weight_files(manifest))
        if sorted((f.path, f.size, f.sha256) for f in entry.files) != expected:
            self._discard_if_allowed(snapshot)
            return None
        opened: dict[str, BinaryIO] = {}
        try:
            for cached in entry.files:
                fd = os.open(entry.file_path(cached.path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                fh = os.fdopen(fd, "rb")  # handed to the caller
                opened[cached.path] = fh
                st = os.fstat(fd)
                if not cached.matches(st) or not _trusted(st):
                    raise _Stale(cached.path)
        except (_Stale, FileNotFoundError, IsADirectoryError):
            _close_all(opened)
            self._discard_if_allowed(snapshot)
            return None
        except OSError as exc:  # ELOOP: a symlink where a file was written
            _close_all(opened)
            if exc.errno != errno.ELOOP:
                raise
            self._discard_if_allowed(snapshot)
            return None
        except BaseException:
            _close_all(opened)
            raise
        _touch(entry.folder / USED_FILE)
        return opened

    def blocked(self, snapshot: SnapshotId) -> bool:
        """An entry is there that ``open_files`` would not use and could not remove (another user's, in a shared
        folder): filling would only fail to rename over it."""
        return self._entry_folder(snapshot).exists()

    # -- writing ---------------------------------------------------------------------------------------------

    def fill(
        self,
        store: ObjectStore,
        snapshot: SnapshotId,
        model: str,
        manifest: SnapshotManifest,
        *,
        private: bool = False,
    ) -> bool:
        """Write the entry for ``snapshot``: every safetensors file restored from ``store`` and hashed whole against
        the manifest, durable, then renamed into place. False when the entry alone is larger than the cap (the
        load then decodes without the cache). Least recently used entries are evicted to make room.

        ``private`` (weights a policy withholds: gated, restricted, embargoed): the entry is written in a folder
        only this user may enter (0700, from before the first byte lands, and renamed into place as it is) and its
        files are 0400, so a cache folder other users can read (a shared MODELARC_CACHE_DIR) does not hand them
        the decoded weights."""
        from modelarc.archive.restore import restore_file  # decoding: only a fill needs it, not `cache ls`

        files = weight_files(manifest)
        need = sum(f.size for f in files)
        if self.max_bytes is not None and need > self.max_bytes:
            return False
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            self._entries.mkdir(parents=True, exist_ok=True)
            probe = self._tmp / f"probe-{uuid.uuid4().hex}"
            probe.mkdir()
            probe.rmdir()
        except OSError as exc:
            if exc.errno not in _NOT_OURS:
                raise
            raise DestinationError(
                f"cannot write the load cache at {self.folder} ({exc.strerror}): set MODELARC_CACHE_DIR to a "
                "writable folder, or load without cache=True"
            ) from None
        self.evict(room=need)
        tmp = self._tmp / f"fill-{uuid.uuid4().hex}"
        file_mode = 0o444
        try:
            if private:
                tmp.mkdir(mode=0o700)
                os.chmod(tmp, 0o700)  # whatever the umask: no byte is written where another user can look
                file_mode = 0o400
            with ThreadPoolExecutor(max_workers=2, thread_name_prefix="modelarc-cache") as pool:
                for f in files:
                    target = tmp.joinpath(FILES, *f.path.split("/"))
                    restore_file(store, f, target, pool, None)
            for f in files:  # read-only whatever the umask: a group-writable file is not trusted (_trusted)
                os.chmod(tmp.joinpath(FILES, *f.path.split("/")), file_mode)
            records = [_record(f, tmp.joinpath(FILES, *f.path.split("/"))) for f in files]
            _write_durably(tmp / ENTRY_FILE, _entry_json(snapshot, model, records))
            os.chmod(tmp / ENTRY_FILE, file_mode)
            _write_durably(tmp / USED_FILE, b"")
            if private:  # behind the entry's own 0700 already; closed too should that one be opened by hand
                os.chmod(tmp / USED_FILE, 0o600)
                for root, dirs, _names in os.walk(tmp):
                    for name in dirs:
                        os.chmod(os.path.join(root, name), 0o700)
            for folder in {tmp, *(tmp.joinpath(FILES, *f.path.split("/")).parent for f in files)}:
                _fsync_dir(folder)
            try:
                os.rename(tmp, self._entry_folder(snapshot))
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                # another process filled it first: keep theirs (the caller checks it as any entry)
            else:
                _fsync_dir(self._entries)
        finally:
            _remove_tree(tmp)
        self.evict(keep=snapshot)  # another process may have filled meanwhile
        return True

    def make_private(self, snapshot: SnapshotId) -> None:
        """Close ``snapshot``'s entry folder to other users (0700) if it is this user's and open to them: one
        filled while the snapshot's weights were public, before a policy withheld them. Another user's entry, or
        a link, is left as it is (a link's target is never followed; ``open_files`` decides whether to use it)."""
        folder = self._entry_folder(snapshot)
        try:
            st = os.lstat(folder)
            if stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and st.st_mode & 0o077:
                os.chmod(folder, 0o700)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno not in _NOT_OURS:
                raise

    # -- removing --------------------------------------------------------------------------------------------

    def evict(self, *, room: int = 0, keep: SnapshotId | None = None) -> list[CacheEntry]:
        """Remove unreadable entries, then least recently used entries, until the rest plus ``room`` bytes fit
        under the cap (no cap: none are removed); ``keep`` is never removed. Returns the readable entries removed.

        Unreadable ones count their bytes on disk (they took room until ``cache clear --all`` otherwise) and go
        first, as they can never be served; only this user's, and a link only as a link (it holds no bytes here,
        so removing it frees nothing and it is left)."""
        if self.max_bytes is None:
            return []
        entries = self.entries()
        unreadable = self.unreadable_entries(entries)
        total = sum(e.bytes for e in entries) + sum(u.bytes for u in unreadable)
        for u in sorted(unreadable, key=lambda u: -u.bytes):
            if total + room <= self.max_bytes:
                break
            if not u.mine or u.bytes == 0 or (keep is not None and u.folder.name == keep.hex):
                continue  # another user's (a shared folder): left, its bytes still counted, as an entry's are
            if self._discard_folder_if_allowed(u.folder) is not None:
                total -= u.bytes
        removed = []
        for e in entries:
            if total + room <= self.max_bytes:
                break
            if e.snapshot == keep:
                continue
            gone = self._discard_if_allowed(e.snapshot)
            if gone is None:
                # another user's entry in a shared folder (or a read-only mount): left, its bytes still counted, so
                # this user's older entries go instead; a load never fails on someone else's entry
                continue
            if gone:
                removed.append(e)
            total -= e.bytes
        return removed

    def remove(self, snapshot: SnapshotId) -> CacheEntry | None:
        """Remove the entry of ``snapshot``; returns it, or None if there was none. ``DestinationError`` when this
        process may not remove it (another user's, in a shared folder; a read-only mount)."""
        entry = self.entry(snapshot)
        try:
            gone = self._discard(snapshot)
        except OSError as exc:
            if exc.errno not in _NOT_OURS:
                raise
            raise DestinationError(
                f"cannot remove the load cache entry {self._entry_folder(snapshot)} ({exc.strerror}): another "
                "user wrote it in a shared cache folder, or the folder is read-only; its owner can remove it"
            ) from None
        return entry if gone and entry is not None else None

    def clear(self) -> CacheClearing:
        """Remove every entry and every temp folder this process may remove (in a shared folder, other users' are
        left and listed); unreadable entries go too.

        A temp folder may belong to a fill running now in another process: that fill then fails and its load says
        so; clearing the whole cache is an explicit act, like ``rm -rf`` of the Hub cache."""
        removed: list[CacheEntry] = []
        left: list[Path] = []
        for e in self.entries():
            gone = self._discard_if_allowed(e.snapshot)
            if gone:
                removed.append(e)
            elif gone is None:
                left.append(e.folder)
        freed = sum(e.bytes for e in removed)
        listed = set(left)
        # temp folders, then unreadable entries that entries() could not list
        own_entries = _own_children(self._entries, _ENTRY_NAME)
        for path in [*_own_children(self._tmp, _TEMP_NAME), *(p for p in own_entries if p not in listed)]:
            size = _remove_counted(path)
            if size is None:
                left.append(path)
            else:
                freed += size
        return CacheClearing(tuple(removed), freed, tuple(left))

    def purge(self, snapshot: SnapshotId, *, open_only: bool = False) -> tuple[int | None, str]:
        """Remove ``snapshot``'s entry, readable or not (a withdrawal: the decoded weights must go whatever state
        they are in); with ``open_only``, only if its folder is open to other users (one a load filled while the
        weights were public; a private one, 0700, is left). Returns (its bytes, "") when removed, (None, "") when
        there was none (or it was left as private), and (None, why) when this process may not remove it."""
        folder = self._entry_folder(snapshot)
        if not os.path.lexists(folder):
            return None, ""
        if open_only and _closed_folder(folder):
            return None, ""
        if os.path.islink(folder):
            # an entry moved to another disk and linked back: the link goes, its target (the decoded weights) is
            # never followed, so it is left and said, not counted as removed
            target = os.path.realpath(folder)
            try:
                self._discard(snapshot)
            except OSError as exc:
                if exc.errno not in _NOT_OURS:
                    raise
            return None, f"a link; its target {target} was not removed"
        size = _own_bytes(folder)
        try:
            gone = self._discard(snapshot)
        except OSError as exc:
            if exc.errno not in _NOT_OURS:
                raise
            return None, exc.strerror or str(exc)
        return (size if gone else None), ""

    def purge_trash(self, snapshot: SnapshotId) -> list[tuple[Path, int]]:
        """Delete the ``tmp/trash-*`` folders holding an entry of ``snapshot`` (its ``entry.json`` says so), with
        their bytes: a removal killed between its rename and its delete leaves the decoded weights there, where no
        load looks and ``purge`` would not; a withdrawal run again must still free them. One this process may not
        delete is left (another user's, in a shared folder), as ``purge`` leaves its entry."""
        gone: list[tuple[Path, int]] = []
        for path in _own_children(self._tmp, _TEMP_NAME):
            if not path.name.startswith("trash-") or path.is_symlink() or not path.is_dir():
                continue
            if _entry_snapshot(path) != str(snapshot):
                continue
            size = _remove_counted(path)
            if size is not None:
                gone.append((path, size))
        return gone

    def _discard_if_allowed(self, snapshot: SnapshotId) -> bool | None:
        """Remove an unusable entry; one this process may not remove (another user's, or on a read-only mount) is
        left, and not used. Returns what ``_discard`` does, or None when the entry was left."""
        return self._discard_folder_if_allowed(self._entry_folder(snapshot))

    def _discard_folder_if_allowed(self, folder: Path) -> bool | None:
        try:
            return self._discard_folder(folder)
        except OSError as exc:
            if exc.errno not in _NOT_OURS:
                raise
            return None

    def _discard(self, snapshot: SnapshotId) -> bool:
        return self._discard_folder(self._entry_folder(snapshot))

    def _discard_folder(self, folder: Path) -> bool:
        """Rename the entry ``folder`` out of ``entries/`` (atomic: no process sees half of it), then delete it (a
        link: unlink it, never following it)."""
        self._tmp.mkdir(parents=True, exist_ok=True)
        trash = self._tmp / f"trash-{uuid.uuid4().hex}"
        try:
            os.rename(folder, trash)
        except FileNotFoundError:
            return False  # already gone (another process removed it)
        _remove_tree(trash)
        return True


def _closed_folder(folder: Path) -> bool:
    """Whether ``folder`` is a real folder no group or other user may enter or list."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and not st.st_mode & 0o077


def purge_snapshot(settings: Settings, snapshot: SnapshotId, *, open_only: bool = False) -> CachePurge:
    """Remove ``snapshot``'s entry from every load cache folder this home uses: its own ``HOME/cache`` and
    MODELARC_CACHE_DIR when set (a withdrawal frees the weights; a decoded copy left in a cache would keep them).
    An entry this process may not remove (another user's, in a shared folder) is left and reported, not an error:
    the withdrawal itself is done, and no load through a catalog that knows of it uses the entry."""
    removed: list[Path] = []
    left: list[tuple[Path, str]] = []
    freed = 0
    for folder in dict.fromkeys([settings.home / "cache", settings.cache_path]):
        cache = LoadCache(folder)
        size, why = cache.purge(snapshot, open_only=open_only)
        if size is not None:
            removed.append(cache._entry_folder(snapshot))
            freed += size
        elif why:
            left.append((cache._entry_folder(snapshot), why))
        for trash, size in cache.purge_trash(snapshot):
            removed.append(trash)
            freed += size
    return CachePurge(tuple(removed), freed, tuple(left))


def with_entries(settings: Settings, snapshots: Iterable[SnapshotId]) -> list[SnapshotId]:
    """Those of ``snapshots`` that have an entry in a load cache folder this home uses, found with one listing of
    each folder's entries: a purge of every snapshot of a large model otherwise looks in each folder per snapshot."""
    names: set[str] = set()
    for folder in dict.fromkeys([settings.home / "cache", settings.cache_path]):
        names |= {p.name for p in _children(LoadCache(folder)._entries)}
    return [d for d in dict.fromkeys(snapshots) if d.hex in names]


def purge_snapshots(
    settings: Settings, snapshots: Iterable[SnapshotId], *, open_only: bool = False
) -> CachePurge:
    """``purge_snapshot`` of each of ``snapshots``, for a change already committed (a stricter policy, withdrawals
    a rebuilt catalog holds). An entry this user may not remove, or a link, is left and reported; so is one whose
    removal failed otherwise (a full disk, an I/O error): failing the command now would say the change was not
    made, while a re-run, finding nothing changed, would not purge."""
    removed: list[Path] = []
    left: list[tuple[Path, str]] = []
    freed = 0
    for digest in dict.fromkeys(snapshots):
        try:
            purged = purge_snapshot(settings, digest, open_only=open_only)
        except OSError as exc:
            where = Path(exc.filename) if exc.filename else settings.home / "cache"
            said = f"snapshot {str(digest)[:19]}'s copy not removed: {exc.strerror or exc}"
            left.append((where, f"{said}; remove it by hand (modelarc cache clear)"))
            continue
        removed += purged.removed
        left += purged.left
        freed += purged.bytes_freed
    return CachePurge(tuple(removed), freed, tuple(left))


def _close_all(files: dict[str, BinaryIO]) -> None:
    for fh in files.values():
        fh.close()


class _Stale(Exception):
    """A cached file differs from what was recorded when it was written (internal: the entry is discarded)."""


def _record(entry: FileEntry, path: Path) -> CachedFile:
    st = path.stat()
    return CachedFile(entry.path, entry.size, entry.sha256, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _entry_json(snapshot: SnapshotId, model: str, files: list[CachedFile]) -> bytes:
    doc = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "snapshot": str(snapshot),
        "model": model,
        "created": time.time(),
        "files": [f.__dict__ for f in files],
    }
    return json.dumps(doc, indent=1).encode()


def _trusted(st: os.stat_result) -> bool:
    """A regular file no group or other user may write, owned by this user or root. (A read-only mount is no
    excuse for another owner: another user can link an entry's folder to one they filled and then mounted.)"""
    return stat.S_ISREG(st.st_mode) and not st.st_mode & 0o022 and st.st_uid in (os.geteuid(), 0)


def _read_entry(folder: Path, *, trusted_only: bool = False) -> CacheEntry | None:
    """The entry as its entry.json says; None if unreadable, or (``trusted_only``) written by someone untrusted."""
    try:
        fd = os.open(folder / ENTRY_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_ENTRY_JSON:
                return None
            if trusted_only and not _trusted(st):
                return None
            doc = json.loads(fh.read(MAX_ENTRY_JSON + 1))
        version = doc.get("version")
        if doc.get("format") != CACHE_FORMAT or type(version) is not int or version != CACHE_VERSION:
            return None
        snapshot = SnapshotId(doc["snapshot"])
        if snapshot.hex != folder.name:
            return None
        if type(doc["files"]) is not list:
            return None
        files = tuple(
            CachedFile(**{k: _field(f, k) for k in CachedFile.__dataclass_fields__}) for f in doc["files"]
        )
        model = doc.get("model", "")
        if type(model) is not str:
            return None
        # every field is checked here, inside the try: `cache ls`, `cache clear` and a capped load's eviction read
        # every entry, and one a co-user of a shared cache (or a damaged disk) wrote must not stop them
        created = _timestamp(doc["created"])
        used = _timestamp((folder / USED_FILE).stat().st_mtime)
    # RecursionError: damaged into "[[[[..." nested deeper than the parser's stack, as unreadable as bad JSON;
    # OverflowError: a time past what a date can hold
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UsageError, RecursionError, OverflowError):
        return None
    return CacheEntry(snapshot, model, folder, files, created, used)


def _entry_snapshot(folder: Path) -> str | None:
    """The snapshot id ``folder``'s entry.json names, whatever the folder is called (one renamed to ``trash-*``);
    None if there is none to read."""
    try:
        fd = os.open(folder / ENTRY_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            doc = json.loads(fh.read(MAX_ENTRY_JSON + 1))
        named = doc["snapshot"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    return named if type(named) is str else None


def _field(doc: dict[str, Any], key: str) -> Any:
    value = doc[key]
    wanted = str if key in ("path", "sha256") else int
    if type(value) is not wanted:
        raise TypeError(f"{key} is {type(value).__name__}")
    if key == "size" and isinstance(value, int) and value < 0:  # would hide other entries' bytes from the cap
        raise ValueError(f"size is {value}")
    return value


def _timestamp(value: Any) -> float:
    """Seconds since the epoch that a date can be made of (``cache ls`` prints them as dates); ValueError or
    TypeError otherwise (a string, a bool, NaN, a year past 9999)."""
    if type(value) not in (int, float):
        raise TypeError(f"a time is {type(value).__name__}")
    dt.datetime.fromtimestamp(value, dt.UTC)  # ValueError, OverflowError or OSError when out of range
    return float(value)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _touch(path: Path) -> None:
    """Mark an entry used now; a read-only cache (shared, mounted read-only) still serves loads."""
    try:
        os.utime(path)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT):
            raise


def _children(folder: Path) -> list[Path]:
    try:
        return [folder / n for n in sorted(os.listdir(folder))]
    except FileNotFoundError:
        return []


# The names this cache gives what it makes in entries/ and tmp/. Anything else there is not its own: a cache folder
# set to one that holds other files (MODELARC_CACHE_DIR=/ makes tmp/ the system's /tmp) must not have them listed,
# counted or deleted by `cache clear`.
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}")
_TEMP_NAME = re.compile(r"(?:fill|trash|probe)-[0-9a-f]{32}")


def _own_children(folder: Path, name: re.Pattern[str]) -> list[Path]:
    return [p for p in _children(folder) if name.fullmatch(p.name)]


def _tree_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, names in os.walk(path):
        for n in names:
            try:
                total += os.lstat(os.path.join(root, n)).st_size
            except FileNotFoundError:
                pass
    return total


def _own_bytes(path: Path) -> int:
    """What removing ``path`` frees: nothing for a symlink (``_remove_tree`` unlinks it, its target stays)."""
    return 0 if path.is_symlink() else _tree_bytes(path)


def _remove_counted(path: Path) -> int | None:
    """Delete ``path`` (``_remove_tree``) and return the bytes it held; None if this process may not (another user's,
    a read-only mount)."""
    size = _own_bytes(path)
    try:
        _remove_tree(path)
    except OSError as exc:
        if exc.errno not in _NOT_OURS:
            raise
        return None
    return size


def _remove_tree(path: Path) -> None:
    """Delete ``path`` and what is under it; what another process deleted meanwhile is not an error. A symlink
    (an entry someone moved to another disk and linked back) is unlinked, never followed: rmtree refused it, which
    made every load of that snapshot and every ``cache clear`` fail."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path, onerror=_ignore_missing)
    except FileNotFoundError:
        pass


def _ignore_missing(_func: Any, _path: str, exc_info: Any) -> None:
    if not isinstance(exc_info[1], FileNotFoundError):
        raise exc_info[1]
