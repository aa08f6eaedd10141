"""Rebuild a snapshot's files byte-identically, verifying every object and every file hash while streaming.

Each file is written to a temp name beside its destination, checked against the manifest's size and sha256, fsynced
and only then renamed into place: a failed pull never leaves a half-written file under a real name. Objects are
fetched and decoded ahead on a small pool, into a few recycled chunk buffers, and each pool thread writes the chunk
it decoded into its file's temp file at the chunk's offset (``os.pwrite``; whole pages with O_DIRECT, see
``_write_chunk``), then feeds it to its file's sha256 once the chunks before it in that file have been
(``_FileHashes``): each file is hashed whole, in order, but two files are hashed at once where the read-ahead spans
them, where one calling thread used to hash every file in turn (a serial ~1.5 GB/s stage; bench/pull_phases.py). The
calling thread checks each file's digest; a finisher thread starts each file's writeback while it is still being
written and makes it durable at the end. So every stage runs on both cores at once and the final fsync has little
left to wait for. A failed restore deletes every temp file it began, including those of files the pool had started
ahead of the one that failed.

The temp name is short and fixed-length (``.modelarc-partial-<32 hex>``), not derived from the file name: any name
push accepts (up to 255 bytes) must also be restorable, and a longer temp name would exceed NAME_MAX. With
``resume=True`` a re-run after an interrupted pull keeps the files already in place that match the manifest and
removes the temp files an interrupted run left.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import mmap
import os
import threading
import uuid
from collections import deque
from collections.abc import Callable, Collection, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from modelarc.archive.manifest import (
    Chunk,
    FileEntry,
    SnapshotManifest,
    check_relative_path,
    is_git_path,
    is_partial_name,
    printable_path,
)
from modelarc.archive.own_state import refuse_state_place, resolved
from modelarc.errors import DestinationError, DiskFullError, IntegrityError
from modelarc.storage import ObjectId, ObjectStore
from modelarc.storage.digests import Sha256Stream, sha256_stream, update_both
from modelarc.storage.folder_lock import FolderBusy, FolderLock
from modelarc.storage.pages import aligned_buffer, is_page_aligned, to_page_boundary

READ_AHEAD = 6
# Every tensor chunk fits (ingest's CHUNK_SIZE); a longer object is decoded into fresh bytes instead.
CHUNK_BUFFER = 8 * 1024 * 1024
# While a file is written, its writeback is started every this many bytes (an fdatasync on the finisher thread),
# so the disk works while the next chunks decode and the fsync that ends the file finds little left to write.
WRITEBACK_STEP = 32 * 1024 * 1024
Progress = Callable[[int], None]


PARTIAL_PREFIX = ".modelarc-partial-"
_HASH_BLOCK = 1024 * 1024
# O_DIRECT writes whole pages from page-aligned memory (what every Linux file system takes)
_PAGE = mmap.PAGESIZE
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})
# Restore's pool threads beyond ``jobs``: an O_DIRECT write returns only once the device has the data, so with
# ``jobs + 1`` threads (one may wait for its turn to hash) the cores idled while writes were in flight; three
# more took a 672 MB FP32 restore from 1.18 to 0.93 s and a 336 MB BF16 one from 0.69 to 0.59 s
# (bench/pull_phases.py, together with the deferred chunk ends of ``_PartialFiles``).
_WAITING = 3


def plan_destination(
    manifest: SnapshotManifest,
    dest: Path,
    force: bool,
    *,
    resume: bool = False,
    protected: tuple[Path, ...] = (),
) -> list[tuple[FileEntry, Path]]:
    """Map every file to a path inside ``dest``; refuse escapes and (without ``force``) existing files, up front.

    With ``resume``, a file already at its target with the manifest's size and sha256 is left out of the plan (it is
    kept, not rewritten), so only a file that exists and differs needs ``force``. No file may land in ``protected``
    (the archive's own places, archive/own_state.py), whatever ``force`` says.
    """
    root = dest.absolute()
    check_folder(root, dest, None)
    targets = []
    clashes = []
    for f in manifest.files:
        if is_git_path(f.path):  # git metadata (.git/config can name commands git runs): never written into dest
            raise DestinationError(f"refusing to write {printable_path(f.path)}: a .git path is git metadata")
        target = root.joinpath(*check_relative_path(f.path).split("/"))
        check_folder(target.parent, dest, f.path)
        # a symlinked folder inside dest could still point outside it: resolve what exists and compare.
        real_parent = resolved(target.parent)
        if not _is_within(real_parent, resolved(root)):
            raise DestinationError(f"refusing to write {f.path}: it would land outside {dest}")
        refuse_state_place(target, protected, printable_path(f.path))
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise DestinationError(f"refusing to write {f.path}: {target} exists and is not a regular file")
        if target.exists():
            if resume and _matches(target, f):
                continue
            if not force:
                clashes.append(f.path)
        targets.append((f, target))
    if clashes:
        more = f" (and {len(clashes) - 1} more)" if len(clashes) > 1 else ""
        differs = " and differs from the snapshot" if resume else ""
        raise DestinationError(f"{dest / clashes[0]} already exists{differs}{more}; use --force to overwrite")
    return targets


def _matches(path: Path, entry: FileEntry) -> bool:
    """Whether the regular file at ``path`` has exactly the manifest's size and sha256 (read only if sizes agree)."""
    sha = hashlib.sha256()
    try:
        if path.stat().st_size != entry.size:
            return False
        with open(path, "rb") as fh:
            while block := fh.read(_HASH_BLOCK):
                sha.update(block)
    except OSError:  # unreadable: treat as different, so it is rewritten only with --force
        return False
    return sha.hexdigest() == entry.sha256


def remove_partial_files(folders: Iterable[Path], keep: Collection[Path] = ()) -> int:
    """Delete the temp files an interrupted restore left in ``folders`` (ours only, by name); returns how many.

    Never a path in ``keep``: the snapshot's own files. A manifest may list a file named like one of our temp files
    (push refuses such names, but a snapshot from elsewhere or an older version may hold one); deleting it made a
    resumed pull report every file restored while one was gone.
    """
    removed = 0
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            if is_partial_name(e.name) and e.is_file(follow_symlinks=False) and Path(e.path) not in keep:
                Path(e.path).unlink(missing_ok=True)
                removed += 1
    return removed


def check_folder(folder: Path, dest: Path, path: str | None = None) -> None:
    """Refuse, before anything is written, a folder that cannot be made because what stands in its place (it, or
    the nearest of its parents that exists) is not a folder: a file, or a symlink to one or to nothing. Caught later,
    it was a bare FileExistsError or NotADirectoryError from a pool thread."""
    probe = folder
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        what = f"{path} under {dest}" if path is not None else f"into {dest}"
        raise DestinationError(f"cannot write {what}: {probe} exists and is not a folder")


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


ChunkBytes = bytes | bytearray | memoryview
# Fetches, verifies and returns an object's decoded bytes; given a buffer (a ``bytearray``, or a view of one where
# restore wants the bytes at a given place in a page), it decodes into it when the object fits and its codec can (the
# result is then a view of that buffer, as from ``ObjectStore.get_into``), else it returns fresh bytes. A remote pull
# passes one that downloads and keeps each object.
ChunkSource = Callable[[ObjectId, "bytearray | memoryview | None"], ChunkBytes]
# Run on a pool thread with a chunk's position in the sequence and its bytes, before they are handed on.
Place = Callable[[int, ChunkBytes], None]
# Given a chunk, its bytes as its source returned them and their sha256 (hashed in the same pass as its file), on a
# pool thread; raises unless they are that object. A remote pull's source hands over objects not yet hashed, and
# keeps each in its store only once this has seen its digest (archive/remote/sync.py).
Confirm = Callable[[Chunk, ChunkBytes, bytes], None]
# Given a file and its header part's bytes (its first ``header_length`` bytes, as written), on the calling thread
# before the file takes its name; raises unless the header says what the manifest does. A remote pull passes
# ``manifest_checks.check_tensors_match_header``: the file's own header, not the signed manifest's word, is what a
# loader reads.
HeaderCheck = Callable[[FileEntry, bytes], None]


class ChunkBuffers:
    """A free list of same-sized buffers that objects are decoded (or downloaded) into and given back to once used.

    At most the read-ahead window plus the chunk being written exist at once, as many as fresh buffers would; but
    reused pages are already mapped, where a fresh 8 MiB buffer per chunk costs 2,048 page faults (and a fresh
    ``bytearray`` is zero-filled first).

    ``aligned=True`` (restore's decode buffers) gives each buffer two pages of slack, so that ``at`` can hand out
    ``size`` bytes of it starting at any given place within a page: a chunk decoded at its file offset's place in a
    page then has its whole pages page-aligned in memory as they are in its file, and O_DIRECT writes them straight
    from there (``_write_chunk``) instead of from a copy. The buffers stay plain ``bytearray`` objects (a download
    buffer, archive/remote/sync.py, needs no alignment and takes none of the slack).
    """

    def __init__(self, size: int = CHUNK_BUFFER, *, aligned: bool = False) -> None:
        self.size = size
        self.aligned = aligned
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        # up to a page before the first page boundary, and up to a page past it before the bytes handed out start
        return bytearray(self.size + 2 * _PAGE if self.aligned else self.size)

    def at(self, buf: bytearray, in_page: int) -> memoryview:
        """``size`` bytes of ``buf`` (one of an ``aligned`` instance's) starting ``in_page`` bytes past a page
        boundary. A ``bytearray``'s memory does not move while a view of it exists, nor between uses (none of them
        resizes it), so the place is worked out afresh each time at no risk."""
        if not self.aligned or not 0 <= in_page < _PAGE:
            raise ValueError(f"no place {in_page} within a page in a buffer without slack")
        start = to_page_boundary(buf) + in_page
        return memoryview(buf)[start : start + self.size]

    def give(self, buf: bytearray) -> None:
        with self._lock:
            self._free.append(buf)


def iter_chunk_bytes(
    store: ObjectStore,
    chunks: Iterable[Chunk],
    pool: ThreadPoolExecutor,
    *,
    verify: bool = True,
    source: ChunkSource | None = None,
    ahead: int = READ_AHEAD,
    recycle: bool = False,
    place: Place | None = None,
    in_page: Callable[[int], int] | None = None,
) -> Generator[ChunkBytes, None, None]:
    """Chunk bytes in order, decoded up to ``ahead`` chunks ahead on ``pool``; each re-hashed unless ``verify=False``.

    ``source`` replaces reading from ``store`` (a remote pull fetches, verifies and keeps each object as it goes).
    At most ``ahead`` chunks are held at once, whatever the number of chunks; closing the iterator early cancels
    those not started. With ``recycle``, each chunk is decoded into a buffer that is reused once the caller asks
    for the next chunk: the caller must be done with a chunk's bytes by then. ``place`` runs on the pool with each
    chunk's position in ``chunks`` and its bytes (of the manifest's length) before they are yielded: restore
    writes each chunk into its file there, so the caller's thread is left only the in-order whole-file hash.
    ``in_page`` (with ``recycle``) gives the place within a page of the n-th chunk's offset in its file: each chunk
    is decoded at that place of its buffer (``ChunkBuffers.at``), so that its whole pages are page-aligned in
    memory as they are in the file, which is what lets restore write them with O_DIRECT without a copy.
    """
    buffers = ChunkBuffers(aligned=in_page is not None) if recycle else None

    def fetch(index: int, oid: ObjectId) -> tuple[ChunkBytes, bytearray | None]:
        if buffers is None:
            return (store.get(oid, verify=verify) if source is None else source(oid, None)), None
        buf = buffers.take()
        into = buf if in_page is None else buffers.at(buf, in_page(index))
        try:
            data = store.get_into(oid, into, verify=verify) if source is None else source(oid, into)
        except BaseException:
            buffers.give(buf)
            raise
        if isinstance(data, memoryview) and data.obj is buf:
            return data, buf
        buffers.give(buf)  # decoded into fresh bytes (a delta, a zstd object): the buffer was not used
        return data, None

    def get(index: int, chunk: Chunk) -> tuple[ChunkBytes, bytearray | None]:
        data, buf = fetch(index, chunk.id)
        try:
            if len(data) != chunk.length:
                raise IntegrityError(f"object {chunk.id} is {len(data)} bytes, manifest says {chunk.length}")
            if place is not None:
                place(index, data)
        except BaseException:
            if buf is not None and buffers is not None:
                buffers.give(buf)
            raise
        return data, buf

    queue: deque[Future[tuple[ChunkBytes, bytearray | None]]] = deque()
    it = enumerate(chunks)
    try:
        for index, chunk in it:
            queue.append(pool.submit(get, index, chunk))
            if len(queue) >= ahead:
                break
        while queue:
            data, buf = queue.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                queue.append(pool.submit(get, *nxt))
            yield data
            # the caller asked for the next chunk: it is done with this one's bytes
            if buf is not None and buffers is not None:
                buffers.give(buf)
    finally:
        for fut in queue:  # a failed restore: read-ahead nobody will take
            fut.cancel()


def file_chunks(entry: FileEntry) -> Iterator[Chunk]:
    for part in entry.parts:
        yield from part.chunks


# Runs a job on the finisher thread (jobs run one at a time, in the order given) and returns its future.
Finish = Callable[[Callable[[], None]], "Future[None]"]


class _PartialFiles:
    """The temp files of one restore, each opened by whichever thread needs it first: a pool thread writing a chunk
    it has just fetched (``os.pwrite`` at the chunk's offset), or the writing thread starting the file.

    A file's last step takes its descriptor over (``take``) once every chunk of it has been hashed, so no pool
    thread can still write to it; whatever is left when the restore ends (a failure) is closed and deleted by
    ``discard``, after the pool has stopped, so no descriptor is closed while a write may still use it.

    The unaligned ends of chunks written with O_DIRECT wait here (``defer``) and go through the page cache in
    ``take``, after the file's last direct write: a buffered write into a file with direct writes in flight waited
    for them (on ext4, measured: 0.25-0.4 s of a 0.7 s restore of 336 MB blocked in those few-KiB writes), and
    the tail of one chunk and the head of the next then make one whole page.
    """

    def __init__(self, targets: list[tuple[FileEntry, Path]]) -> None:
        self._targets = targets
        # file index -> (descriptor, temp path, a second descriptor with O_DIRECT or -1)
        self._open: dict[int, tuple[int, Path, int]] = {}
        # file index -> [(offset, bytes)] still to write through the page cache
        self._ends: dict[int, list[tuple[int, bytes]]] = {}
        self._lock = threading.Lock()

    def fd(self, index: int) -> int:
        return self._entry(index)[0]

    def direct_fd(self, index: int) -> int | None:
        """The file's O_DIRECT descriptor, or None where the file system refuses O_DIRECT (tmpfs, say)."""
        direct = self._entry(index)[2]
        return None if direct < 0 else direct

    def _entry(self, index: int) -> tuple[int, Path, int]:
        with self._lock:
            if index not in self._open:
                target = self._targets[index][1]
                tmp = target.parent / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}"
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    # O_EXCL: the temp name is ours alone; chunks are MiBs, so unbuffered writes lose nothing
                    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                except OSError as exc:
                    if exc.errno in _NO_SPACE:
                        raise
                    # a folder we may not write in, a read-only or pseudo file system (/proc, /sys)
                    raise DestinationError(f"cannot write into {target.parent}: {exc.strerror}") from None
                self._open[index] = (fd, tmp, _open_direct(tmp))
            return self._open[index]

    def defer(self, index: int, offset: int, data: bytes) -> None:
        """Keep ``data`` to be written at ``offset`` of file ``index`` when the file is taken over."""
        with self._lock:
            self._ends.setdefault(index, []).append((offset, data))

    def take(self, index: int) -> tuple[int, Path]:
        """The file's descriptor and temp path, once every chunk of it is written: its O_DIRECT descriptor is closed
        and the ends it kept are written first. Should either fail, the file stays here for ``discard``."""
        with self._lock:
            fd, tmp, direct = self._open[index]
            self._open[index] = (fd, tmp, -1)  # until the ends are written: a failure leaves the file to ``discard``
            ends = sorted(self._ends.pop(index, []))
        if direct >= 0:
            os.close(direct)  # every direct write to the file has returned: the ends go through the page cache now
        for offset, data in _coalesced(ends):
            _pwrite_all(fd, data, offset)
        with self._lock:
            del self._open[index]
        return fd, tmp

    def discard(self) -> None:
        with self._lock:
            left, self._open, self._ends = list(self._open.values()), {}, {}
        for fd, tmp, direct in left:
            os.close(fd)
            if direct >= 0:
                os.close(direct)
            tmp.unlink(missing_ok=True)


def _open_direct(path: Path) -> int:
    """A second descriptor on ``path`` that writes around the page cache, or -1 where that is not possible."""
    flag = getattr(os, "O_DIRECT", 0)
    if not flag:
        return -1
    try:
        return os.open(path, os.O_WRONLY | flag)
    except OSError:
        return -1


def _coalesced(ends: list[tuple[int, bytes]]) -> Iterator[tuple[int, bytes]]:
    """Sorted (offset, bytes) pieces with the touching ones joined: one chunk's tail and the next one's head."""
    run: list[bytes] = []
    start = at = 0
    for offset, data in ends:
        if run and offset != at:
            yield start, b"".join(run)
            run = []
        if not run:
            start = offset
        run.append(data)
        at = offset + len(data)
    if run:
        yield start, b"".join(run)


def _write_chunk(
    fd: int,
    direct: int | None,
    data: ChunkBytes,
    offset: int,
    staging: Callable[[], mmap.mmap],
    defer: Callable[[int, bytes], None],
) -> list[ChunkBytes]:
    """Write ``data`` at ``offset``: its whole aligned pages through ``direct`` (O_DIRECT), the unaligned ends
    copied and handed to ``defer`` (written through ``fd`` once the file's direct writes are done,
    ``_PartialFiles.take``); returns the pieces as written, in file order, for the file's hash.

    Why O_DIRECT: writing through the page cache costs the kernel a freshly allocated page per 4 KiB, and on the
    shared VM it was measured at about half a pull's CPU (perf: ``copy_folio_from_iter_atomic``; ``dd`` of a 529 MB
    shard: 1.3-1.55 s of system time buffered, 0.13 s with ``oflag=direct``). O_DIRECT needs page-aligned memory:
    restore decodes each chunk at its file offset's place in a page (``iter_chunk_bytes``' ``in_page``), so the
    middle is written straight from the chunk's buffer. Bytes decoded elsewhere (fresh bytes: a delta, a zstd
    object) have their middle copied into ``staging()`` (this thread's page-aligned buffer, made on first need)
    first. Either way what is hashed is the memory the direct write read: the bytes hashed are the bytes written.
    The ends share pages only with other chunks' ends, so no page is written both ways. A refused (EINVAL) or short
    direct write is finished through ``fd``.
    """
    view = memoryview(data).cast("B")
    start = -offset % _PAGE  # up to the first page boundary
    end = len(view) - (offset + len(view)) % _PAGE  # from the last page boundary
    if direct is None:
        _pwrite_all(fd, view, offset)
        return [view]
    if end - start < _PAGE:  # no whole page: all of it waits with the ends
        whole = bytes(view)
        defer(offset, whole)
        return [whole]
    middle = view[start:end]
    if not is_page_aligned(middle):
        if end - start > CHUNK_BUFFER:  # longer than any staging buffer (an object restore did not decode)
            _pwrite_all(fd, view, offset)
            return [view]
        middle = memoryview(staging())[: end - start]
        middle[:] = view[start:end]
    head, tail = bytes(view[:start]), bytes(view[end:])  # the chunk's buffer is reused before they are written
    if head:
        defer(offset, head)
    try:
        done = os.pwrite(direct, middle, offset + start)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        done = 0
    _pwrite_all(fd, middle[done:], offset + start + done)
    if tail:
        defer(offset + end, tail)
    return [head, middle, tail]


class _Abandoned(Exception):
    """A pool thread's chunk will never be hashed: the restore failed while it waited for its turn."""


class _FileHashes:
    """Each file's whole-file sha256, fed on the pool threads, each file's chunks strictly in order.

    Why on the pool: one thread hashing every file in turn made sha256 (about 1.5 GB/s on one core) a serial stage,
    which the scheduler could starve on a busy machine; here the chunks of a file are still hashed one after another, but two files (or the end
    of one and the start of the next) are hashed at once, and whichever thread decoded a chunk hashes it, so no
    thread exists only to hash. A thread whose chunk is not next in its file waits for the one before it, which
    was submitted earlier and so is already running: chunks start in order (the pool's queue is first in, first
    out), so the wait always ends, unless the restore fails, when ``abandon`` wakes every waiter.
    """

    def __init__(self, count: int, *, native: bool = False) -> None:
        # native streams where each chunk is also hashed on its own (``update_both`` pairs the two)
        self._sha: list[Sha256Stream] = [sha256_stream() if native else hashlib.sha256() for _ in range(count)]
        self._next = [0] * count  # the position in its file of the chunk each file hashes next
        self._turn = threading.Condition()
        self._abandoned = False

    def update(
        self, index: int, position: int, pieces: list[ChunkBytes], chunk: Sha256Stream | None = None
    ) -> None:
        """Feed chunk ``position`` of file ``index`` to the file's hash, in its turn; and to ``chunk`` (the chunk's
        own hash) in the same pass when given."""
        with self._turn:
            while self._next[index] != position:
                if self._abandoned:
                    raise _Abandoned
                self._turn.wait()
        # its turn: no other thread touches this file's hash until _next moves on
        for piece in pieces:
            if chunk is None:
                self._sha[index].update(piece)
            else:
                update_both(self._sha[index], chunk, piece)
        with self._turn:
            self._next[index] = position + 1
            self._turn.notify_all()

    def hexdigest(self, index: int) -> str:
        """The file's digest; call only once every chunk of it has been placed (its futures are done)."""
        return self._sha[index].hexdigest()

    def abandon(self) -> None:
        with self._turn:
            self._abandoned = True
            self._turn.notify_all()


@dataclass(frozen=True)
class _PooledFile:
    """One file of a restore whose chunks the pool writes (``_PartialFiles``) and hashes (``_FileHashes``)."""

    files: _PartialFiles
    hashes: _FileHashes
    index: int

    def fd(self) -> int:
        return self.files.fd(self.index)

    def digest(self) -> str:
        """The file's sha256; only once every chunk of it has arrived (each was hashed before it was yielded)."""
        return self.hashes.hexdigest(self.index)

    def take(self) -> tuple[int, Path]:
        return self.files.take(self.index)


def _placer(
    targets: list[tuple[FileEntry, Path]],
    files: _PartialFiles,
    hashes: _FileHashes,
    confirm: Confirm | None = None,
) -> tuple[Place, Iterator[Chunk], Callable[[int], int]]:
    """Every chunk of ``targets`` in order, the ``place`` that writes the n-th of them into its temp file and
    feeds it to its file's hash once the chunks before it in that file have been (with ``confirm``, to the chunk's
    own hash as well, in the same pass, and hands ``confirm`` its digest), and the place within a page of the n-th
    chunk's offset in its file (``iter_chunk_bytes``' ``in_page``)."""
    # (file index, offset in the file, position in the file) of each chunk
    where: list[tuple[int, int, int]] = []
    every: list[Chunk] = []
    for i, (entry, _target) in enumerate(targets):
        offset = 0
        for position, chunk in enumerate(file_chunks(entry)):
            where.append((i, offset, position))
            every.append(chunk)
            offset += chunk.length

    local = threading.local()  # each pool thread's page-aligned buffer, for bytes not decoded page-aligned

    def staging() -> mmap.mmap:
        buf: mmap.mmap | None = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = aligned_buffer(CHUNK_BUFFER)
        return buf

    def place(n: int, data: ChunkBytes) -> None:
        i, offset, position = where[n]
        try:
            pieces = _write_chunk(
                files.fd(i), files.direct_fd(i), data, offset, staging, functools.partial(files.defer, i)
            )
        except OSError as exc:
            entry, target = targets[i]
            raise _disk_full(exc, target, entry) from None
        if confirm is None:
            hashes.update(i, position, pieces)
            return
        own = sha256_stream()
        hashes.update(i, position, pieces, own)
        confirm(every[n], data, own.digest())

    return place, iter(every), lambda n: where[n][1] % _PAGE


def restore_file(
    store: ObjectStore,
    entry: FileEntry,
    target: Path,
    pool: ThreadPoolExecutor,
    progress: Progress | None,
    source: ChunkSource | None = None,
    finish: Finish | None = None,
) -> None:
    """Write ``entry`` to ``target``, verified: the whole file against the manifest's sha256 (the digest a
    signature covers) before it takes its name; a mismatch re-reads its objects verified to name the culprit.
    (Objects from ``source`` are verified by it as they arrive.) The last step (fsync, close, rename into
    place) runs here, or is handed to ``finish`` to run later on another thread, so that the next file's bytes
    flow while this one's reach the disk; a file appears under its name only once it is durable either way.
    """
    chunks = iter_chunk_bytes(store, file_chunks(entry), pool, verify=False, source=source, recycle=True)
    try:
        _restore_from(store, entry, target, chunks, progress, finish)
    finally:
        chunks.close()


def _restore_from(
    store: ObjectStore,
    entry: FileEntry,
    target: Path,
    chunks: Iterator[ChunkBytes],
    progress: Progress | None,
    finish: Finish | None,
    pooled: _PooledFile | None = None,
    check_header: HeaderCheck | None = None,
) -> None:
    try:
        _write_verified(store, entry, target, chunks, progress, finish, pooled, check_header)
    except OSError as exc:
        raise _disk_full(exc, target, entry) from None


def _disk_full(exc: OSError, target: Path, entry: FileEntry) -> OSError | DiskFullError:
    if exc.errno in _NO_SPACE:
        return DiskFullError(
            f"disk full: no space left in the destination folder {target.parent} while writing {entry.path} "
            f"({exc.strerror}); nothing partial was left there"
        )
    return exc


def _write_verified(
    store: ObjectStore,
    entry: FileEntry,
    target: Path,
    chunks: Iterator[ChunkBytes],
    progress: Progress | None,
    finish: Finish | None,
    pooled: _PooledFile | None = None,
    check_header: HeaderCheck | None = None,
) -> None:
    """Write the next ``len(file_chunks(entry))`` items of ``chunks`` (the entry's chunk bytes, in order).

    With ``pooled``, the pool has already written each chunk into the file's temp file and fed it to the file's
    hash by the time it arrives here, so only the digest check is left; the descriptor is then taken over for the
    file's last step. On a failure such a file is left to its ``_PartialFiles`` to delete. ``check_header`` is
    given the file's header part as soon as its bytes are here (before the rest of the file is waited for), so a
    file whose header lies is refused before it takes its name.
    """
    # The whole file is hashed in file order (here, or on the pool: ``pooled``), against the manifest's sha256
    # (docs/FORMAT.md, "Restoring files safely": the digest a signature covers). That one pass is the check: a byte
    # that is not what the signed manifest says fails the file, and only then are its objects re-read, verified, to
    # name the corrupt one (hashing every object on the pool as well cost 10-25% of a pull for nothing more).
    sha = hashlib.sha256()
    written = 0
    handed_off = False
    # writeback started so far: an fdatasync on the finisher thread per WRITEBACK_STEP bytes written; a failed
    # one fails the file (in complete(): a later fsync need not report the same lost write again)
    kicks: list[Future[None]] = []
    kick_errors: list[OSError] = []
    kicked = 0
    header = bytearray()  # the file's header part, collected for check_header
    header_due = check_header is not None
    if pooled is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp: Path | None = target.parent / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}"
    else:
        tmp = None  # the pool's: known here only once it is taken over
    try:
        if pooled is None:
            assert tmp is not None
            # O_EXCL: the temp name is ours alone; chunks are MiBs, so unbuffered os.write loses nothing
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        else:
            fd = pooled.fd()
        try:
            if header_due and not entry.header_length:
                assert check_header is not None
                check_header(entry, b"")
                header_due = False
            for _chunk in file_chunks(entry):
                data = next(chunks)
                if header_due:  # copied now: a recycled buffer is reused once the next chunk is asked for
                    assert check_header is not None
                    header += memoryview(data).cast("B")[: entry.header_length - len(header)]
                    if len(header) >= entry.header_length:
                        check_header(entry, bytes(header))
                        header_due = False
                if pooled is None:
                    _write_all(fd, data)
                    sha.update(data)
                written += len(data)
                if finish is not None and written - kicked >= WRITEBACK_STEP:
                    kicks.append(finish(lambda: _start_writeback(fd, kick_errors)))
                    kicked = written
                if progress:
                    progress(len(data))
            actual = sha.hexdigest() if pooled is None else pooled.digest()
            if written != entry.size or actual != entry.sha256:
                for chunk in file_chunks(entry):  # name the culprit: get() raises for the corrupt object
                    store.get(chunk.id)
                raise IntegrityError(
                    f"{entry.path}: rebuilt file does not match the manifest "
                    f"(size {written} vs {entry.size}, sha256 {actual} vs {entry.sha256})"
                )
        except BaseException:
            for kick in kicks:  # the descriptor stays open until no writeback job can still use it
                kick.result()
            if pooled is None:  # else the pool may still be writing to it: its _PartialFiles closes it
                os.close(fd)
            raise
        if pooled is not None:
            fd, tmp = pooled.take()  # every chunk is hashed, so written: no pool thread uses it any more

        def complete() -> None:
            assert tmp is not None
            try:
                try:
                    if kick_errors:
                        raise kick_errors[0]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, target)
            except OSError as exc:
                raise _disk_full(exc, target, entry) from None
            finally:
                tmp.unlink(missing_ok=True)

        handed_off = True
        if finish is None:
            complete()
        else:
            finish(complete)
    finally:
        if not handed_off and tmp is not None:
            if pooled is not None:  # taken over from its _PartialFiles (``tmp`` is set only then): ours to close
                os.close(fd)
            tmp.unlink(missing_ok=True)


def _start_writeback(fd: int, errors: list[OSError]) -> None:
    """Write the file's dirty pages so far (finisher thread); an error is kept for the file's last step to raise."""
    try:
        os.fdatasync(fd)
    except OSError as exc:
        errors.append(exc)


def _write_all(fd: int, data: ChunkBytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _pwrite_all(fd: int, data: ChunkBytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def restore(
    store: ObjectStore,
    manifest: SnapshotManifest,
    dest: str | os.PathLike[str],
    *,
    force: bool = False,
    progress: Progress | None = None,
    jobs: int = 2,
    source: ChunkSource | None = None,
    resume: bool = False,
    announce: Callable[[list[ObjectId]], None] | None = None,
    confirm: Confirm | None = None,
    check_header: HeaderCheck | None = None,
    protected: tuple[Path, ...] = (),
) -> list[Path]:
    """Write every file of ``manifest`` under ``dest``; returns the paths written.

    Objects come from ``store`` unless ``source`` is given; either way each file's size and sha256 are checked.
    Chunks are fetched ahead across file boundaries, so a snapshot of many small files does not wait one round trip
    (or one decode) per file; with ``jobs`` above ``READ_AHEAD`` (a remote ``source``, whose workers mostly wait on
    the network) the window widens to ``jobs`` chunks. ``resume=True`` (what ``modelarc pull`` uses) keeps files
    already in place that match the manifest and removes the temp files an interrupted run left, before writing;
    the default rewrites every file, as before. ``announce`` is told, before the first fetch, every object id
    ``source`` will be asked for, in that order (a remote source downloads them ahead, several per request).
    With ``confirm``, each chunk is hashed on its own as well, in the same pass as its file (``update_both``: 7.7 ms
    per 8 MiB against 10.6 ms for two hashlib passes), and ``confirm`` is given its digest once it is written: a
    remote source then need not hash an object before handing it over, only keep it until it is confirmed.
    ``check_header`` is run on every file's header part before that file takes its name (``HeaderCheck``).
    No file is written into ``protected`` (``plan_destination``).
    """
    root = Path(dest)
    targets = plan_destination(manifest, root, force, resume=resume, protected=protected)
    with _writing_into(root):
        return _restore_planned(
            store, manifest, root, targets, progress=progress, jobs=jobs, source=source,
            resume=resume, announce=announce, confirm=confirm, check_header=check_header,
        )


@contextmanager
def _writing_into(root: Path) -> Iterator[None]:
    """Hold ``root`` (made if need be; the plan has checked it may be) for this restore alone (an flock on the folder
    itself, storage/folder_lock.py). A second pull into the same folder would delete this one's temp files when it
    starts (``remove_partial_files``) and rename files under it; it is refused instead, before it writes a byte."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = FolderLock(root)
    except FolderBusy:
        raise DestinationError(
            f"another pull is writing {root}: wait for it to end, or pull into another folder"
        ) from None
    except OSError as exc:  # not ours to write (or to read): named, as a file that cannot be written in it is
        raise DestinationError(f"cannot write into {root}: {exc.strerror}") from None
    with lock:
        yield


def _restore_planned(
    store: ObjectStore,
    manifest: SnapshotManifest,
    root: Path,
    targets: list[tuple[FileEntry, Path]],
    *,
    progress: Progress | None,
    jobs: int,
    source: ChunkSource | None,
    resume: bool,
    announce: Callable[[list[ObjectId]], None] | None,
    confirm: Confirm | None,
    check_header: HeaderCheck | None,
) -> list[Path]:
    if resume:  # after the plan: it has checked that none of these folders leads outside dest
        remove_partial_files(_folders_of(manifest, root), keep=_paths_of(manifest, root))
    if announce is not None:
        announce([c.id for entry, _target in targets for c in file_chunks(entry)])
    written = []
    # one thread starts writeback while a file is written and makes finished files durable (fsync, rename) while
    # the next file is decoded and written
    # threads beyond ``jobs`` (``_WAITING``): a pool thread waits for its turn to hash (``_FileHashes``) and for its
    # O_DIRECT writes to reach the device, while the others decode
    with (
        ThreadPoolExecutor(max_workers=max(1, jobs) + _WAITING, thread_name_prefix="modelarc-restore") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelarc-fsync") as finisher,
    ):
        finishing: list[Future[None]] = []

        def finish(job: Callable[[], None]) -> Future[None]:
            future = finisher.submit(job)
            finishing.append(future)
            return future

        _start_threads(pool, max(1, jobs) + _WAITING)
        _start_threads(finisher, 1)  # the same for the thread that finishes files: a Ctrl-C in its first submit
        files = _PartialFiles(targets)
        hashes = _FileHashes(len(targets), native=confirm is not None)
        place, every_chunk, in_page = _placer(targets, files, hashes, confirm)
        chunks = iter_chunk_bytes(
            store,
            every_chunk,
            pool,
            verify=False,  # one sha256 pass: each whole file, below
            source=source,
            ahead=max(READ_AHEAD, jobs),
            recycle=True,
            place=place,
            in_page=in_page,
        )
        try:
            for i, (entry, target) in enumerate(targets):
                _restore_from(
                    store,
                    entry,
                    target,
                    chunks,
                    progress,
                    finish,
                    pooled=_PooledFile(files, hashes, i),
                    check_header=check_header,
                )
                written.append(target)
        finally:
            chunks.close()  # cancels the read-ahead of a failed restore before the pool waits for it
            hashes.abandon()  # a pool thread waiting for its turn to hash a chunk that failed gives up
            # every file handed off is finished, even after a failure
            errors = [f.exception() for f in finishing]
            pool.shutdown(wait=True)  # no chunk is being written any more: the temp files left can go
            files.discard()
        for error in errors:
            if error is not None:
                raise error
    for d in {t.parent for t in written}:
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return written


def _start_threads(pool: ThreadPoolExecutor, count: int) -> None:
    """Start all ``count`` threads of a fresh ``pool`` now, before any temp file exists.

    Why: a pool starts a thread on a submit, and waits for it to run; a Ctrl-C (KeyboardInterrupt) raised in that
    wait leaves the thread running but unknown to the pool, so ``shutdown`` does not wait for it. It then ran the
    chunk it was started for after the failed restore had deleted its temp files, and left a new one behind (an
    interrupted pull said "nothing partial was recorded" over a ``.modelarc-partial-*`` file). Each thread waits at
    a barrier until all have started, so none is idle and each submit starts the next one.
    """
    barrier = threading.Barrier(count + 1)
    try:
        for _ in range(count):
            pool.submit(barrier.wait, 60)
        barrier.wait(60)
    except BaseException:
        barrier.abort()  # the threads that did start are released (BrokenBarrierError, in futures nobody reads)
        raise


def _folders_of(manifest: SnapshotManifest, root: Path) -> set[Path]:
    """``root`` and every folder the manifest's files go in: where an interrupted restore may have left temp files."""
    return {root} | {path.parent for path in _paths_of(manifest, root)}


def _paths_of(manifest: SnapshotManifest, root: Path) -> set[Path]:
    """Where each of the manifest's files goes under ``root``."""
    return {root.joinpath(*check_relative_path(f.path).split("/")) for f in manifest.files}
