"""Rebuild a snapshot's files byte-identically, verifying every object and every file hash while streaming.

Each file is written to a temp name beside its destination, checked against the manifest's size and sha256, fsynced
and only then renamed into place: a failed pull never leaves a half-written file under a real name. Objects are
fetched and decoded ahead on a small pool so decoding and writing overlap.

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
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from modelarc.archive.manifest import Chunk, FileEntry, SnapshotManifest, check_relative_path
from modelarc.errors import DestinationError, DiskFullError, IntegrityError
from modelarc.storage import ObjectId, ObjectStore

READ_AHEAD = 6
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


ChunkSource = Callable[[ObjectId], "bytes | bytearray"]


def iter_chunk_bytes(
    store: ObjectStore,
    chunks: Iterable[Chunk],
    pool: ThreadPoolExecutor,
    *,
    verify: bool = True,
    source: ChunkSource | None = None,
    ahead: int = READ_AHEAD,
) -> Generator[bytes | bytearray, None, None]:
    """Chunk bytes in order, decoded up to ``ahead`` chunks ahead on ``pool``; each re-hashed unless ``verify=False``.

    ``source`` replaces reading from ``store`` (a remote pull fetches, verifies and keeps each object as it goes).
    At most ``ahead`` chunks are held at once, whatever the number of chunks; closing the iterator early cancels
    those not started.
    """
    get: ChunkSource = source or (lambda oid: store.get(oid, verify=verify))
    queue: deque[tuple[Chunk, Future[bytes | bytearray]]] = deque()
    it = iter(chunks)
    try:
        for chunk in it:
            queue.append((chunk, pool.submit(get, chunk.id)))
            if len(queue) >= ahead:
                break
        while queue:
            chunk, fut = queue.popleft()
            data = fut.result()
            nxt = next(it, None)
            if nxt is not None:
                queue.append((nxt, pool.submit(get, nxt.id)))
            if len(data) != chunk.length:
                raise IntegrityError(f"object {chunk.id} is {len(data)} bytes, manifest says {chunk.length}")
            yield data
    finally:
        for _chunk, fut in queue:  # a failed restore: read-ahead nobody will take
            fut.cancel()


def file_chunks(entry: FileEntry) -> Iterator[Chunk]:
    for part in entry.parts:
        yield from part.chunks


Finish = Callable[[Callable[[], None]], None]


def restore_file(
    store: ObjectStore,
    entry: FileEntry,
    target: Path,
    pool: ThreadPoolExecutor,
    progress: Progress | None,
    source: ChunkSource | None = None,
    finish: Finish | None = None,
    *,
    hash_file: bool = False,
) -> None:
    """Write ``entry`` to ``target``, verified. The last step (fsync, close, rename into place) runs here, or is
    handed to ``finish`` to run later on another thread, so that the next file's bytes flow while this one's reach
    the disk; a file appears under its name only once it is durable either way.

    ``hash_file=True`` also hashes the whole file against the manifest's sha256 while it is written (what objects
    from ``source`` always get): the load cache asks for it, because later loads trust its copy without re-reading.
    """
    chunks = iter_chunk_bytes(store, file_chunks(entry), pool, verify=source is None, source=source)
    try:
        _restore_from(store, entry, target, chunks, progress, source is not None or hash_file, finish)
    finally:
        chunks.close()


def _restore_from(
    store: ObjectStore,
    entry: FileEntry,
    target: Path,
    chunks: Iterator[bytes | bytearray],
    progress: Progress | None,
    foreign: bool,
    finish: Finish | None,
) -> None:
    try:
        _write_verified(store, entry, target, chunks, progress, foreign, finish)
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
    chunks: Iterator[bytes | bytearray],
    progress: Progress | None,
    foreign: bool,
    finish: Finish | None,
) -> None:
    """Write the next ``len(file_chunks(entry))`` items of ``chunks`` (the entry's chunk bytes, in order)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f"{PARTIAL_PREFIX}{uuid.uuid4().hex}"
    # From this archive's own store, each object is re-hashed against its id on the pool (both cores), and that
    # is enough: a manifest in the catalog was built by ingest or passed the commit's content check, so its
    # chunks rebuild each file's sha256. Objects from elsewhere (`foreign`) come with a manifest nobody here has
    # checked yet: the whole file is hashed as it is written, the check a pull into a folder relies on.
    sha = hashlib.sha256() if foreign else None
    written = 0
    handed_off = False
    try:
        # O_EXCL: the temp name is ours alone; chunks are MiBs, so unbuffered os.write loses nothing
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            for _chunk in file_chunks(entry):
                data = next(chunks)
                if sha is not None:
                    sha.update(data)
                _write_all(fd, data)
                written += len(data)
                if progress:
                    progress(len(data))
            if written != entry.size or (sha is not None and sha.hexdigest() != entry.sha256):
                for chunk in file_chunks(entry):  # name the culprit: get() raises for the corrupt object
                    store.get(chunk.id)
                digest = sha.hexdigest() if sha is not None else "not hashed whole"
                raise IntegrityError(
                    f"{entry.path}: rebuilt file does not match the manifest "
                    f"(size {written} vs {entry.size}, sha256 {digest} vs {entry.sha256})"
                )
        except BaseException:
            os.close(fd)
            raise

        def complete() -> None:
            try:
                try:
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


def _write_all(fd: int, data: bytes | bytearray) -> None:
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
    the network) the window widens to ``jobs`` chunks. ``resume=True`` (what ``modelarc pull`` uses) keeps files already in place that match the manifest and removes
    the temp files an interrupted run left, before writing; the default rewrites every file, as before.
    """
    root = Path(dest)
    targets = plan_destination(manifest, root, force, resume=resume)
    if resume:  # after the plan: it has checked that none of these folders leads outside dest
        remove_partial_files(_folders_of(manifest, root))
    written = []
    # one thread makes finished files durable (fsync, rename) while the next file is decoded and written
    with (
        ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="modelarc-restore") as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelarc-fsync") as finisher,
    ):
        finishing: list[Future[None]] = []
        every_chunk = (c for entry, _target in targets for c in file_chunks(entry))
        verify = source is None
        chunks = iter_chunk_bytes(
            store, every_chunk, pool, verify=verify, source=source, ahead=max(READ_AHEAD, jobs)
        )
        try:
            for entry, target in targets:
                _restore_from(
                    store,
                    entry,
                    target,
                    chunks,
                    progress,
                    source is not None,
                    lambda job: finishing.append(finisher.submit(job)),
                )
                written.append(target)
        finally:
            chunks.close()  # cancels the read-ahead of a failed restore before the pool waits for it
            errors = [
                f.exception() for f in finishing
            ]  # every file handed off is finished, even after a failure
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
