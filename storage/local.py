"""Local-folder backend: one file per key under a root directory, written with temp file + fsync + rename."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from modelarc.errors import DiskFullError, StoreAccessError, StoredValueError, StoreWriteLostError
from modelarc.storage.backend import key_parts
from modelarc.storage.pages import PAGE, aligned_buffer, is_page_aligned

# errnos that mean "this file system cannot take more bytes": full, or over the user's quota
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
SYNC_THREADS = 16  # directory fsyncs in flight at once in sync(): they wait on the disk, not on a core


class LocalBackend:
    """Keys map to files below ``root``; temp files live in ``root/tmp`` so a crash leaves only debris there.

    Directory fsyncs after renames are deferred to ``sync()`` (called once per push before the catalog commits):
    an object is durable when both its file and its directory entry have reached the disk, and one directory sync
    per fan-out directory per push is far cheaper than one per object. A folder a write creates (``objects/``,
    ``objects/XX``, ``records/``, ``tmp/``) is an entry in its parent like any file: the parent of each is synced
    too (once, when the folder is made), or a power loss could take the folder, and every object in it, with it.
    """

    concurrency = 1

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        """``create=False`` opens an existing store only: a command that reads an archive must never leave a new,
        empty store wherever a mistyped setting or an unmounted disk pointed (only ``modelarc init`` creates one)."""
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        if create:
            for parent in _make_folders(self.tmp):
                _fsync_dir(parent)
        elif not self.root.is_dir():
            raise StoreAccessError(
                f"no store at {self.root}: not a folder (run `modelarc init` to create one)"
            )
        self._tmp_ready = create  # an existing store without tmp/ gets one at its first write
        self._dirty: set[Path] = set()
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*key_parts(key))

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        try:
            self._put(key, data)
        except OSError as exc:
            if exc.errno in NO_SPACE_ERRNOS:
                # the temp file is already gone (see _put): nothing partial is left under a real key
                raise DiskFullError(
                    f"disk full: no space left in the store {self.root} ({exc.strerror}); "
                    "free space there, then run the command again"
                ) from None
            raise

    def _put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        final = self._path(key)
        if final.exists():
            return
        made = [] if final.parent.is_dir() else _make_folders(final.parent)
        if not self._tmp_ready:
            made += _make_folders(self.tmp)
            self._tmp_ready = True
        if made:  # synced with the renames, before any caller's catalog names what is in them
            with self._lock:
                self._dirty.update(made)
        tmp = self.tmp / f"{final.name}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            _write_file(fd, memoryview(data).cast("B"))
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        # rename is atomic; two writers of the same content-addressed key race harmlessly (identical bytes).
        try:
            os.replace(tmp, final)
        except FileNotFoundError:
            if os.path.lexists(tmp):  # the destination's folder is what is missing: say so as the system did
                tmp.unlink(missing_ok=True)
                raise
            raise StoreWriteLostError(
                f"the temp file {tmp} was removed before its rename into {final}: something cleared the store's "
                "tmp/ meanwhile (gc does, once no writer holds the store lock); nothing was stored there; run the "
                "command again"
            ) from None
        except BaseException:  # a full folder can refuse the new entry: leave no temp file behind either
            tmp.unlink(missing_ok=True)
            raise
        with self._lock:
            self._dirty.add(final.parent)

    def sync(self) -> None:
        with self._lock:
            dirs, self._dirty = self._dirty, set()
        if len(dirs) <= 1:
            for d in dirs:
                _fsync_dir(d)
            return
        # all at once: a journaling file system commits concurrent fsyncs together, where one directory after the
        # other waited for a commit each (a 336 MB pull dirties ~100 fan-out folders: 0.1-0.3 s one by one)
        with ThreadPoolExecutor(max_workers=min(SYNC_THREADS, len(dirs)), thread_name_prefix="modelarc-dirsync") as pool:
            list(pool.map(_fsync_dir, dirs))

    def open(self, key: str) -> BinaryIO:
        fd, _size = self._open_value(key)
        return os.fdopen(fd, "rb")

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        fd, size = self._open_value(key)
        try:
            if max_bytes is not None and size > max_bytes:
                raise StoredValueError(
                    f"{self._path(key)} is {size} bytes, more than the {max_bytes} a reader of it takes"
                )
            return _read_exactly(fd, size)
        finally:
            os.close(fd)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0:
            raise ValueError(f"read_range needs a non-negative offset and length, not {offset}, {length}")
        fd, _size = self._open_value(key)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def _open_value(self, key: str) -> tuple[int, int]:
        """A read-only descriptor of the regular file under ``key``, and its size; ``StoredValueError`` for anything
        else there, before a byte is read; ``FileNotFoundError`` for nothing.

        Why: a store is a folder anyone with access may damage. A symbolic link to ``/dev/zero`` read to its end
        grew until memory ran out, a FIFO blocked every reader for good. O_NOFOLLOW refuses a link (the last
        component: the store's own folders may be links, e.g. a store moved to another disk), O_NONBLOCK opens a
        FIFO without waiting for a writer, and the type is checked on the open descriptor, so nothing can be
        swapped in between the check and the read. O_NONBLOCK is left on: it changes nothing for a regular file.
        """
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise StoredValueError(f"{path} is a symbolic link, not a regular file") from None
            if exc.errno == errno.ENXIO:  # a socket (or a device with nothing behind it)
                raise StoredValueError(f"{path} is not a regular file (a socket or device)") from None
            raise
        try:
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise StoredValueError(f"{path} is {_file_kind(st.st_mode)}, not a regular file")
        return fd, st.st_size

    def has(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def mtime(self, key: str) -> float:
        return self._path(key).stat().st_mtime

    def iterate(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix)
        if not base.exists():
            return
        for dirpath, _dirs, files in os.walk(base):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                yield f"{rel}/{name}"

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except IsADirectoryError:
            # a folder put where a value belongs, which repair sets aside: only an empty one is removed
            try:
                path.rmdir()
            except OSError as exc:
                raise StoredValueError(
                    f"{path} is a folder where a file belongs and cannot be removed ({exc.strerror}): "
                    "move it out of the store by hand"
                ) from None
        _fsync_dir(path.parent)

    def temp_count(self) -> int:
        return sum(1 for _ in self.tmp.iterdir()) if self.tmp.is_dir() else 0

    def clean_tmp(self, older_than: float) -> int:
        """Remove temp files a killed writer left behind; only those older than ``older_than`` (a timestamp)."""
        removed = 0
        if not self.tmp.is_dir():
            return 0
        for entry in self.tmp.iterdir():
            try:
                if entry.stat().st_mtime < older_than:
                    entry.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


def _read_exactly(fd: int, size: int) -> bytes:
    """The ``size`` bytes from the start of the regular file ``fd`` (fewer if it was cut meanwhile, never more): one
    ``read`` into bytes of exactly that length, the result handed out without a copy."""
    data = os.read(fd, size) if size else b""
    if len(data) == size or not data:
        return data
    parts = [data]  # a short read (a file cut meanwhile, or a file system that reads less per call)
    got = len(data)
    while got < size and (piece := os.read(fd, size - got)):
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    )
    return next((name for test, name in kinds if test(mode)), "an unknown kind of file")


def _write_file(fd: int, view: memoryview) -> None:
    """Write ``view`` to the new, empty file ``fd``: its whole pages with O_DIRECT, the rest through the page cache.

    Why: a write through the page cache costs the kernel a freshly allocated page per 4 KiB (perf:
    ``copy_folio_from_iter_atomic``): 0.25-0.34 s of CPU in ``os.write`` of a 672 MB FP32 push's 0.59-0.81 s of
    system time, 0.03 s direct (bench/push_phases.py; ``dd`` of a 529 MB file: 1.3-1.55 s of system time
    buffered, 0.13 s with ``oflag=direct``). O_DIRECT moves the bytes from our memory to the device. It
    needs page-aligned memory: an object encoded by ``ObjectStore.put`` already is (``EncodeBuffers``), anything
    else is copied a piece at a time into a reused aligned buffer, which costs less than the page cache's copy.
    The tail (less than a page) goes through the page cache once the direct writes are done: a buffered write into
    a file with direct writes in flight waits for them. Where the file system refuses O_DIRECT (tmpfs; some
    overlay and NFS mounts refuse the flag, others the write: EINVAL), or a direct write comes back short of a
    whole page, the rest is written the buffered way, as before. Durability is unchanged: the caller fsyncs.
    """
    whole = len(view) - len(view) % PAGE
    done = 0
    still_direct = False
    if whole and _set_direct(fd, True):
        try:
            done = _write_direct(fd, view[:whole])
        finally:
            still_direct = not _set_direct(fd, False)
    if still_direct and done < len(view):
        _write_rest_buffered(fd, view[done:], done)
        return
    view = view[done:]
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_rest_buffered(fd: int, view: memoryview, offset: int) -> None:
    """The rest of the file from ``offset``, through a second descriptor of the same file opened without O_DIRECT:
    for when the flag could be set on ``fd`` but not cleared again (no file system is known to do that; if one did,
    the tail's unaligned write through ``fd`` would fail with a bare EINVAL)."""
    other = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY)
    try:
        while view:
            written = os.pwrite(other, view, offset)
            view, offset = view[written:], offset + written
    finally:
        os.close(other)


def _write_direct(fd: int, view: memoryview) -> int:
    """Write whole pages of ``view`` through ``fd`` (O_DIRECT, at its current offset); how many bytes were written,
    fewer than asked when the file system refused (EINVAL) or a write came back short of a whole page."""
    if is_page_aligned(view):
        return _write_pages(fd, view)
    done = 0
    with _STAGING.borrow() as staging:
        while done < len(view):
            piece = memoryview(staging)[: min(len(staging), len(view) - done)]
            piece[:] = view[done : done + len(piece)]
            written = _write_pages(fd, piece)
            done += written
            if written < len(piece):
                break
    return done


def _write_pages(fd: int, view: memoryview) -> int:
    done = 0
    while done < len(view):
        try:
            written = os.write(fd, view[done:])
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                break
            raise
        done += written
        if not written or written % PAGE:
            break
    return done


def _set_direct(fd: int, on: bool) -> bool:
    """Turn O_DIRECT on or off for ``fd``; False when it cannot be on (no such flag here, or the file system
    refuses it: checked by the kernel when the flag is set, as at open)."""
    if not _O_DIRECT:
        return False
    import fcntl  # here, not at the top: POSIX only, and a system without O_DIRECT never gets this far

    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)
    except OSError:
        return False
    return True


class _Staging:
    """Page-aligned buffers that a put copies unaligned bytes into for O_DIRECT, lent one per write in progress.

    A free list rather than one per thread: a server's many request threads would each keep one for good; here at
    most ``KEEP`` stay once the writes are over, however many threads wrote.
    """

    SIZE = 8 << 20  # an ingest chunk: most objects go in one write
    KEEP = 4

    def __init__(self) -> None:
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def borrow(self) -> Iterator[mmap.mmap]:
        with self._lock:
            buf = self._free.pop() if self._free else None
        if buf is None:
            buf = aligned_buffer(self.SIZE)
        try:
            yield buf
        finally:
            with self._lock:
                if len(self._free) < self.KEEP:
                    self._free.append(buf)


_STAGING = _Staging()
_O_DIRECT = getattr(os, "O_DIRECT", 0)


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing ancestors (as ``mkdir(parents=True)``); the parents whose entries that
    changed, to be fsynced. A folder another writer made meanwhile counts too: its maker may not have synced its
    parent yet when this writer's catalog commit names what it puts there."""
    missing = []
    here = folder
    while not here.is_dir() and here.parent != here:
        missing.append(here)
        here = here.parent
    parents = []
    for made in reversed(missing):
        try:
            made.mkdir()
        except FileExistsError:
            if not made.is_dir():  # a file where the folder belongs: as mkdir(parents=True, exist_ok=True) says
                raise
        parents.append(made.parent)
    return parents


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
