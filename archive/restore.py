"""Rebuild a snapshot's files byte-identically, verifying every object and every file hash while streaming.

Each file is written to a temp name beside its destination, checked against the manifest's size and sha256, fsynced
and only then renamed into place: a failed pull never leaves a half-written file under a real name. Objects are
fetched, decoded and re-hashed against their ids ahead on a small pool, into a few recycled chunk buffers; the
writing thread writes each chunk and feeds the whole-file sha256 in file order; a finisher thread starts each
file's writeback while it is still being written and makes it durable at the end. So every stage runs on both
cores at once and the final fsync has little left to wait for.

The temp name is short and fixed-length (``.modelarc-partial-<32 hex>``), not derived from the file name: any name
push accepts (up to 255 bytes) must also be restorable, and a longer temp name would exceed NAME_MAX. With
``resume=True`` a re-run after an interrupted pull keeps the files already in place that match the manifest and
removes the temp files an interrupted run left.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from modelarc.archive.manifest import Chunk, FileEntry, SnapshotManifest, check_relative_path
from modelarc.errors import DestinationError, DiskFullError, IntegrityError
from modelarc.storage import ObjectId, ObjectStore

READ_AHEAD = 6
# Every tensor chunk fits (ingest's CHUNK_SIZE); a longer object is decoded into fresh bytes instead.
CHUNK_BUFFER = 8 * 1024 * 1024
# While a file is written, its writeback is started every this many bytes (an fdatasync on the finisher thread),
# so the disk works while the next chunks decode and the fsync that ends the file finds little left to write.
WRITEBACK_STEP = 32 * 1024 * 1024
Progress = Callable[[int], None]


PARTIAL_PREFIX = ".modelarc-partial-"
# Temp files of ours: today's name, and the one older versions derived from the file name.
_PARTIAL_NAME = re.compile(r"\.modelarc-partial-[0-9a-f]{32}|\..+\.[0-9a-f]{12}\.modelarc-partial", re.DOTALL)
_HASH_BLOCK = 1024 * 1024
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def plan_destination(
    manifest: SnapshotManifest, dest: Path, force: bool, *, resume: bool = False
) -> list[tuple[FileEntry, Path]]:
    """Map every file to a path inside ``dest``; refuse escapes and (without ``force``) existing files, up front.

    With ``resume``, a file already at its target with the manifest's size and sha256 is left out of the plan (it is
    kept, not rewritten), so only a file that exists and differs needs ``force``.
    """
    root = dest.absolute()
    targets = []
    clashes = []
    for f in manifest.files:
        target = root.joinpath(*check_relative_path(f.path).split("/"))
        # a symlinked folder inside dest could still point outside it: resolve what exists and compare.
        real_parent = _resolve_existing(target.parent)
        if not _is_within(real_parent, _resolve_existing(root)):
            raise DestinationError(f"refusing to write {f.path}: it would land outside {dest}")
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


def remove_partial_files(folders: Iterable[Path]) -> int:
    """Delete the temp files an interrupted restore left in ``folders`` (ours only, by name); returns how many."""
    removed = 0
    for folder in folders:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            if _PARTIAL_NAME.fullmatch(e.name) and e.is_file(follow_symlinks=False):
                Path(e.path).unlink(missing_ok=True)
                removed += 1
    return removed


def _resolve_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe.resolve() / path.relative_to(probe)


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


ChunkBytes = bytes | bytearray | memoryview
# Fetches, verifies and returns an object's decoded bytes; given a buffer, it decodes into it when the object fits
# and its codec can (the result is then a view of that buffer, as from ``ObjectStore.get_into``), else it returns
# fresh bytes. A remote pull passes one that downloads and keeps each object.
ChunkSource = Callable[[ObjectId, "bytearray | None"], ChunkBytes]


class ChunkBuffers:
    """A free list of same-sized buffers that objects are decoded (or downloaded) into and given back to once used.

    At most the read-ahead window plus the chunk being written exist at once, as many as fresh buffers would; but
    reused pages are already mapped, where a fresh 8 MiB buffer per chunk costs 2,048 page faults (and a fresh
    ``bytearray`` is zero-filled first).
    """

    def __init__(self, size: int = CHUNK_BUFFER) -> None:
        self.size = size
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(self.size)

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
) -> Generator[ChunkBytes, None, None]:
    """Chunk bytes in order, decoded up to ``ahead`` chunks ahead on ``pool``; each re-hashed unless ``verify=False``.

    ``source`` replaces reading from ``store`` (a remote pull fetches, verifies and keeps each object as it goes).
    At most ``ahead`` chunks are held at once, whatever the number of chunks; closing the iterator early cancels
    those not started. With ``recycle``, each chunk is decoded into a buffer that is reused once the caller asks
    for the next chunk: the caller must be done with a chunk's bytes by then.
    """
    buffers = ChunkBuffers() if recycle else None

    def get(oid: ObjectId) -> tuple[ChunkBytes, bytearray | None]:
        if buffers is None:
            return (store.get(oid, verify=verify) if source is None else source(oid, None)), None
        buf = buffers.take()
        try:
            data = store.get_into(oid, buf, verify=verify) if source is None else source(oid, buf)
        except BaseException:
            buffers.give(buf)
            raise
        if isinstance(data, memoryview) and data.obj is buf:
            return data, buf
        buffers.give(buf)  # decoded into fresh bytes (a delta, a zstd object): the buffer was not used
        return data, None

    queue: deque[tuple[Chunk, Future[tuple[ChunkBytes, bytearray | None]]]] = deque()
    it = iter(chunks)
    try:
        for chunk in it:
            queue.append((chunk, pool.submit(get, chunk.id)))
            if len(queue) >= ahead:
                break
        while queue:
            chunk, fut = queue.popleft()
            data, buf = fut.result()
            nxt = next(it, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(get, nxt.id)))
            if len(data) != chunk.length:
                raise IntegrityError(f"object {chunk.id} is {len(data)} bytes, manifest says {chunk.length}")
            yield data
            # the caller asked for the next chunk: it is done with this one's bytes
            if buf is not None and buffers is not None:
                buffers.give(buf)
    finally:
        for _chunk, fut in queue:  # a failed restore: read-ahead nobody will take
            fut.cancel()


def file_chunks(entry: FileEntry) -> Iterator[Chunk]:
    for part in entry.parts:
        yield from part.chunks


# Runs a job on the finisher thread (jobs run one at a time, in the order given) and returns its future.
Finish = Callable[[Callable[[], None]], "Future[None]"]


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
    chunks = iter_chunk_bytes(
        store, file_chunks(entry), pool, verify=False, source=source, recycle=True
    )
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
) -> None:
    try:
        _write_verified(store, entry, target, chunks, progress, finish)
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
) -> None:
    """Write the next ``len(file_chunks(entry))`` items of ``chunks`` (the entry's chunk bytes, in order)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}"
    # The whole file is hashed in file order on this thread, against the manifest's sha256 (docs/FORMAT.md,
    # "Restoring files safely": the digest a signature covers). That one pass is the check: a byte that is not
    # what the signed manifest says fails the file, and only then are its objects re-read, verified, to name the
    # corrupt one (hashing every object on the pool as well cost 10-25% of a pull for nothing more).
    sha = hashlib.sha256()
    written = 0
    handed_off = False
    # writeback started so far: an fdatasync on the finisher thread per WRITEBACK_STEP bytes written; a failed
    # one fails the file (in complete(): a later fsync need not report the same lost write again)
    kicks: list[Future[None]] = []
    kick_errors: list[OSError] = []
    kicked = 0
    try:
        # O_EXCL: the temp name is ours alone; chunks are MiBs, so unbuffered os.write loses nothing
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            for _chunk in file_chunks(entry):
                data = next(chunks)
                _write_all(fd, data)
                sha.update(data)
                written += len(data)
                if finish is not None and written - kicked >= WRITEBACK_STEP:
                    kicks.append(finish(lambda: _start_writeback(fd, kick_errors)))
                    kicked = written
                if progress:
                    progress(len(data))
            if written != entry.size or sha.hexdigest() != entry.sha256:
                for chunk in file_chunks(entry):  # name the culprit: get() raises for the corrupt object
                    store.get(chunk.id)
                raise IntegrityError(
                    f"{entry.path}: rebuilt file does not match the manifest "
                    f"(size {written} vs {entry.size}, sha256 {sha.hexdigest()} vs {entry.sha256})"
                )
        except BaseException:
            for kick in kicks:  # the descriptor stays open until no writeback job can still use it
                kick.result()
            os.close(fd)
            raise

        def complete() -> None:
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
        if not handed_off:
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
) -> list[Path]:
    """Write every file of ``manifest`` under ``dest``; returns the paths written.

    Objects come from ``store`` unless ``source`` is given; either way each file's size and sha256 are checked.
    Chunks are fetched ahead across file boundaries, so a snapshot of many small files does not wait one round trip
    (or one decode) per file; with ``jobs`` above ``READ_AHEAD`` (a remote ``source``, whose workers mostly wait on
    the network) the window widens to ``jobs`` chunks. ``resume=True`` (what ``modelarc pull`` uses) keeps files
    already in place that match the manifest and removes the temp files an interrupted run left, before writing;
    the default rewrites every file, as before.
    """
    root = Path(dest)
    targets = plan_destination(manifest, root, force, resume=resume)
    if resume:  # after the plan: it has checked that none of these folders leads outside dest
        remove_partial_files(_folders_of(manifest, root))
    written = []
    # one thread starts writeback while a file is written and makes finished files durable (fsync, rename) while
    # the next file is decoded and written
    with (
        ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="modelarc-restore") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelarc-fsync") as finisher,
    ):
        finishing: list[Future[None]] = []

        def finish(job: Callable[[], None]) -> Future[None]:
            future = finisher.submit(job)
            finishing.append(future)
            return future

        every_chunk = (c for entry, _target in targets for c in file_chunks(entry))
        chunks = iter_chunk_bytes(
            store,
            every_chunk,
            pool,
            verify=False,  # one sha256 pass: each whole file, below
            source=source,
            ahead=max(READ_AHEAD, jobs),
            recycle=True,
        )
        try:
            for entry, target in targets:
                _restore_from(store, entry, target, chunks, progress, finish)
                written.append(target)
        finally:
            chunks.close()  # cancels the read-ahead of a failed restore before the pool waits for it
            # every file handed off is finished, even after a failure
            errors = [f.exception() for f in finishing]
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


def _folders_of(manifest: SnapshotManifest, root: Path) -> set[Path]:
    """``root`` and every folder the manifest's files go in: where an interrupted restore may have left temp files."""
    folders = {root}
    for f in manifest.files:
        folders.add(root.joinpath(*check_relative_path(f.path).split("/")[:-1]))
    return folders
