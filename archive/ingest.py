"""Ingest a model folder or a single file into the store and build its manifest, reading each file once.

The main thread reads each file sequentially in chunks (at most ``CHUNK_SIZE`` bytes of one tensor, header or
blob) and hashes each chunk once for two digests: the whole file's running sha256 and the chunk's own, its object
id (storage/digests.py ``update_and_digest``: the two interleaved on the SHA unit cost about 0.7 of hashing the
bytes twice); once most recent chunks turn out to be stored already, the pool hashes the ids instead, beside the
reader (``_ChunkWriter.pair_hashes``). A worker pool skips each chunk the store already has and otherwise encodes
and writes it. The hashing, numpy and the compressors release the GIL, so both cores work, and at most
``MAX_IN_FLIGHT`` chunks are held in memory at once.

Everything that can refuse a source is checked before the first object is written: file names (UTF-8, at most 255
bytes a name, see ``path_problem``), symlinks (``list_source_files``), and every safetensors/GGUF header with the
limits of ``archive/limits.py`` (``plan_files`` reads the headers once up front; the data is still read once).
A refused push therefore leaves no unreferenced objects behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from modelarc.archive.deltas import DeltaBases
from modelarc.archive.formats.gguf import GGUFTensor
from modelarc.archive.formats.gguf import read_layout as read_gguf_layout
from modelarc.archive.formats.safetensors import TensorEntry, parse_layout, read_header_length
from modelarc.archive.limits import check_snapshot_files, check_snapshot_tensors
from modelarc.archive.manifest import (
    Chunk,
    FileEntry,
    Part,
    SnapshotManifest,
    file_kind,
    is_git_path,
    is_partial_name,
    path_problem,
    printable_path,
)
from modelarc.archive.own_state import place_holding
from modelarc.archive.push_index import FileRead
from modelarc.errors import (
    DeltaBaseError,
    DeltaChainError,
    IntegrityError,
    ObjectMissingError,
    SourceError,
    UnsupportedObjectError,
)
from modelarc.storage import ObjectId, ObjectStore, PutResult, Replacing
from modelarc.storage.codecs.floatplanes import FLOAT_DTYPES
from modelarc.storage.digests import pairing_pays, sha256_stream, update_and_digest

CHUNK_SIZE = 8 * 1024 * 1024  # a multiple of every element size; chunk boundaries are relative to the part
MAX_IN_FLIGHT = 6
PAIR_WINDOW = 8  # chunks whose fate (new or already stored) decides whether the reader pairs the next one's id
SKIPPED_DIRS = {".git", ".cache"}

Progress = Callable[[int], None]
Warn = Callable[[str], None]  # one line for the user about something left out (the CLI prints it on stderr)


@dataclass(frozen=True)
class ObjectWrite:
    id: str
    raw_size: int
    stored_size: int
    codec: str
    added: bool
    delta_base: str | None = None
    standalone_size: int | None = None  # a delta this push wrote: what it would have taken on its own
    replaced: bool = False  # written in place of a copy the catalog knows damaged (archive/heal.py)


@dataclass(frozen=True)
class Reused:
    """A file a push takes as it is in an earlier snapshot, without reading it: its entry there, and the objects
    that entry's chunks name (every one of them in the store)."""

    entry: FileEntry
    objects: tuple[ObjectWrite, ...]
    counted: bool = False  # its bytes were reported to the push's progress already (read to prove it unchanged)


@dataclass(frozen=True)
class IngestResult:
    manifest: SnapshotManifest
    objects: tuple[ObjectWrite, ...]  # every chunk object the manifest references, once each
    reads: tuple[FileRead, ...] = ()  # the files this ingest read (not those it took from ``reuse``)
    reused: int = 0  # files taken from ``reuse`` without reading them

    @property
    def stored_bytes_added(self) -> int:
        return sum(o.stored_size for o in self.objects if o.added)

    @property
    def deltas_added(self) -> tuple[ObjectWrite, ...]:
        """The objects this ingest wrote as deltas against the base snapshot."""
        return tuple(o for o in self.objects if o.added and o.delta_base is not None)

    @property
    def replaced(self) -> tuple[str, ...]:
        """The objects this ingest wrote in place of damaged copies (``replacing``)."""
        return tuple(o.id for o in self.objects if o.replaced)


def list_source_files(
    source: Path,
    *,
    follow_symlinks: bool = False,
    warn: Warn | None = None,
    own_state: tuple[Path, ...] = (),
) -> list[tuple[str, Path]]:
    """(relative posix path, absolute path) for every regular file to archive, sorted by path.

    Symlinks are an explicit choice, never a silent one: a link to a file inside ``source`` is archived as that
    file's content; a link to a file outside is refused unless ``follow_symlinks``; a link to a folder is followed
    only with ``follow_symlinks`` (a link back to a folder that contains it is refused as a loop) and otherwise
    skipped with a ``warn`` line, as are broken links and sockets or fifos.

    ``own_state``: the archive's own places, resolved (archive/own_state.py ``state_places``). Anything in one of
    them, reached directly or through a link, is left out with a ``warn`` line: the home holds the private signing
    key and the live catalog, which are never a model's files. Left out rather than refused, so that a project
    folder that keeps its archive's home inside can still be pushed; a source inside one of them is refused.
    """
    if not source.exists():
        raise SourceError(f"{printable_path(str(source))}: no such file or folder")
    place = place_holding(Path(os.path.realpath(source)), own_state)
    if place is not None:
        raise SourceError(
            f"{printable_path(str(source))}: inside this archive's own files ({printable_path(str(place))}), "
            "which are never archived"
        )
    if source.is_file():
        if is_git_path(source.name):  # as the walk skips one: no restore would write it (a receiver refuses it)
            shown = printable_path(str(source))
            raise SourceError(f"{shown}: a .git file is git metadata, which is not archived")
        return [(_archivable_name(source.name, source), source)]
    if not source.is_dir():
        raise SourceError(f"{printable_path(str(source))}: not a regular file or folder")
    found = _walk(source, follow_symlinks, warn or (lambda _msg: None), own_state)
    if not found:
        raise SourceError(f"{printable_path(str(source))}: folder has no files to archive")
    return sorted(found)


def _walk(
    source: Path, follow_symlinks: bool, warn: Warn, own_state: tuple[Path, ...]
) -> list[tuple[str, Path]]:
    """Depth-first over ``source`` with an explicit stack (deep trees must not hit the recursion limit)."""
    root_real = Path(os.path.realpath(source))
    found: list[tuple[str, Path]] = []
    # (folder as reached, its relative path prefix, real paths of it and every folder above it)
    stack: list[tuple[Path, str, tuple[Path, ...]]] = [(source, "", (root_real,))]
    while stack:
        folder, prefix, chain = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise SourceError(f"{printable_path(str(folder))}: cannot list folder ({exc.strerror})") from None
        for entry in entries:
            full, rel = Path(entry.path), prefix + entry.name
            shown = printable_path(str(full))
            if is_git_path(entry.name):
                # ".git" in any case, a folder, a file (a worktree's or submodule's names a folder on this machine)
                # or a link to either: git's metadata, which every restore refuses to write, so it is never archived
                if not entry.is_dir(follow_symlinks=False):  # a checkout's own .git folder goes without saying
                    warn(f"skipped {shown}: git metadata is not archived")
                continue
            # where the entry really is: a link resolved; anything else is its folder's real path and its name
            real = Path(os.path.realpath(full)) if entry.is_symlink() else chain[-1] / entry.name
            if place_holding(real, own_state) is not None:
                warn(f"skipped {shown}: this archive's own files (home, keys, catalog, store) are never archived")
                continue
            if entry.is_symlink():
                if real.is_dir():
                    if entry.name in SKIPPED_DIRS:
                        continue
                    if not follow_symlinks:
                        warn(
                            f"skipped {shown}: a symbolic link to a folder (use --follow-symlinks to archive it)"
                        )
                        continue
                    if real in chain:
                        raise SourceError(
                            f"{shown}: symbolic link loop: it points to {printable_path(str(real))}, "
                            "a folder that contains it"
                        )
                    stack.append((full, rel + "/", (*chain, real)))
                elif real.is_file():
                    if not follow_symlinks and not real.is_relative_to(root_real):
                        raise SourceError(
                            f"{shown}: symbolic link to {printable_path(str(real))}, outside "
                            f"{printable_path(str(source))}; use --follow-symlinks to archive its content"
                        )
                    found.append((_archivable_name(rel, full), full))
                else:
                    what = (
                        "a symbolic link to something not a regular file"
                        if real.exists()
                        else "a broken symbolic link"
                    )
                    warn(f"skipped {shown}: {what}")
            elif entry.is_dir(follow_symlinks=False):
                if entry.name not in SKIPPED_DIRS:
                    stack.append((full, rel + "/", (*chain, Path(os.path.realpath(full)))))
            elif entry.is_file(follow_symlinks=False):
                found.append((_archivable_name(rel, full), full))
            else:
                warn(f"skipped {shown}: not a regular file")
    return found


def _archivable_name(rel: str, full: Path) -> str:
    """``rel`` if a restore can recreate it exactly; a clear error naming the file otherwise."""
    problem = path_problem(rel)
    shown = printable_path(str(full))
    if problem is None:
        if is_partial_name(rel.rsplit("/", 1)[-1]):
            # an interrupted pull's temp file (a pulled folder pushed before the pull was resumed): a resumed pull
            # deletes files so named unless the snapshot lists them, as an older version's does even then
            raise SourceError(
                f"{shown}: named like the temp file of an interrupted 'modelarc pull', which is not archived; "
                "finish that pull or remove the file (or rename it, if it is one of the model's files)"
            )
        return rel
    if problem == "is not valid UTF-8":
        raise SourceError(
            f"{shown}: file name is not valid UTF-8; rename it (archived names are UTF-8, see docs/FORMAT.md)"
        )
    raise SourceError(f"{shown}: file name cannot be archived portably: it {problem}")


def total_size(files: list[tuple[str, Path]]) -> int:
    return sum(p.stat().st_size for _, p in files)


class _ChunkWriter:
    """Hash-check-encode-write chunks on a pool while the caller keeps reading."""

    def __init__(
        self,
        store: ObjectStore,
        pool: ThreadPoolExecutor,
        in_flight: int = MAX_IN_FLIGHT,
        warn: Warn | None = None,
        replacing: Replacing | None = None,
    ) -> None:
        self.store = store
        self.warn = warn
        self.replacing = replacing
        self.fallbacks = 0  # chunks stored on their own because their delta base could not be used
        self.pool = pool
        self.in_flight = in_flight  # chunks held at once: bounds memory, keeps every worker fed
        self.pending: deque[Future[PutResult]] = deque()
        self.results: dict[str, ObjectWrite] = {}
        # whether each of the last chunks stored was new (True) or already in the store: see pair_hashes
        self.recent: deque[bool] = deque(maxlen=PAIR_WINDOW)
        self.lock = threading.Lock()
        # Chunk buffers, reused: a fresh 8 MiB allocation per chunk costs page faults that take as long as the
        # copy itself (measured: reading ran at the speed of hashing). A buffer comes back once its chunk is stored.
        self.free: list[bytearray] = []

    def buffer(self, size: int) -> bytearray:
        """A buffer for a chunk of ``size`` bytes: a pooled chunk-sized one when one is free, else a new one, only
        as large as ``size`` when that is less than a chunk (and then not pooled). A fresh 8 MiB buffer for a
        small tensor cost ~2.4 ms of zeroed pages: 11% of the CPU of a test file of small-model pushes (cProfile
        of tests/cli/test_cli_access.py, 2026-12-02), up to MAX_IN_FLIGHT + 1 of them per push."""
        with self.lock:
            if self.free:
                return self.free.pop()
        return bytearray(min(size, CHUNK_SIZE))

    def pair_hashes(self) -> bool:
        """Whether the reader should hash the next chunk's id together with the file's sha256, or leave the id to
        the pool. Paired, the two digests cost ~0.7 of hashing twice, but all on the reading thread; that pays
        while the pool is busy encoding new chunks, and not when most chunks are already stored (a re-push with
        ``--rehash``, a copy of a model archived before): then the pool has nothing to do but the ids, and hashing
        them there runs beside the reader (4.29 GB sharded re-push --rehash: 5.15 s always paired, against 3.25 s
        for sha256 alone). Decided by the last ``PAIR_WINDOW`` chunks stored: paired unless most were already there.
        Never where pairing does not pay on this machine (``pairing_pays``): the reader would hash every byte twice
        in turn, the serial stage of a push, while the pool could hash the ids beside it for the same CPU.
        """
        if not pairing_pays():
            return False
        with self.lock:
            new, seen = sum(self.recent), len(self.recent)
        return 2 * new >= seen

    def submit(
        self,
        data: bytes | bytearray | memoryview,
        dtype: str | None,
        owner: bytearray | None = None,
        base: ObjectId | None = None,
        *,
        object_id: ObjectId | None,
    ) -> Future[PutResult]:
        """Store ``data`` on the pool (as a delta against ``base`` when that is smaller), its id hashed there
        unless the caller did (``object_id``); ``owner``, the pooled buffer ``data`` lives in, is reused once it
        is stored."""
        while len(self.pending) >= self.in_flight:
            self.pending.popleft().result()
        fut = self.pool.submit(self._write, data, dtype, owner, base, object_id)
        self.pending.append(fut)
        return fut

    def _put(
        self, data: bytes | bytearray | memoryview, dtype: str | None, base: ObjectId | None, oid: ObjectId | None
    ) -> PutResult:
        if oid is None:
            oid = ObjectId.of(data)
        if base is None or (self.replacing is not None and oid in self.replacing):
            # a damaged object is written on its own: its good copy then needs no other object to read back
            return self.store.put(data, dtype_hint=dtype, object_id=oid, replacing=self.replacing)
        try:
            try:
                return self.store.put_delta(data, base, dtype_hint=dtype, object_id=oid)
            except DeltaChainError:
                # the parent's chunk is at the chain limit (a long line of fine-tunes): delta against the root of
                # its chain instead, an older ancestor, so restoring stays bounded and the delta is still small
                root = self.store.delta_chain(base)[-1]
                return self.store.put_delta(data, root, dtype_hint=dtype, object_id=oid)
        except (DeltaBaseError, DeltaChainError, ObjectMissingError) as exc:
            # the new weights are archived whatever state the base is in: on their own, and the user is told once
            with self.lock:
                first = not self.fallbacks
                self.fallbacks += 1
            if first and self.warn is not None:
                self.warn(f"stored chunks on their own instead of as deltas: {exc}")
            return self.store.put(data, dtype_hint=dtype, object_id=oid, replacing=self.replacing)
        except (UnsupportedObjectError, IntegrityError):
            # the chunk is stored and its copy cannot be read as it (a newer format, a flipped header byte): with
            # ``replacing`` its bytes take that copy's place, on their own as any replacement (store.put)
            if self.replacing is None:
                raise
            return self.store.put(data, dtype_hint=dtype, object_id=oid, replacing=self.replacing)

    def _write(
        self,
        data: bytes | bytearray | memoryview,
        dtype: str | None,
        owner: bytearray | None,
        base: ObjectId | None,
        oid: ObjectId | None,
    ) -> PutResult:
        try:
            result = self._put(data, dtype, base, oid)
            with self.lock:
                self.recent.append(result.added)
        finally:
            if owner is not None:
                if isinstance(data, memoryview):
                    data.release()
                if len(owner) == CHUNK_SIZE:
                    with self.lock:
                        self.free.append(owner)
        with self.lock:
            prev = self.results.get(result.id)
            if prev is None or (result.added and not prev.added) or (result.replaced and not prev.replaced):
                self.results[result.id] = ObjectWrite(
                    result.id,
                    result.raw_size,
                    result.stored_size,
                    result.codec,
                    result.added,
                    result.delta_base,
                    result.standalone_size,
                    result.replaced,
                )
        return result

    def drain(self) -> None:
        while self.pending:
            self.pending.popleft().result()


@dataclass(frozen=True)
class SourcePlan:
    """One file to archive, with its header already parsed and checked, so a refusal comes before any write."""

    rel: str
    path: Path
    size: int
    kind: str  # "safetensors" | "gguf" | "blob"
    header_length: int = 0  # bytes before the first tensor (safetensors: 8 + N; GGUF: the data start)
    # sha256 of those header bytes, as parsed here: the read must find the same bytes, or the manifest would list
    # the tensors of a header that is not the one archived (a file rewritten at the same size in between)
    header_sha256: bytes = b""
    tensors: tuple[TensorEntry | GGUFTensor, ...] = ()


def plan_files(files: list[tuple[str, Path]], source: str | os.PathLike[str]) -> list[SourcePlan]:
    """Stat every file and parse every safetensors/GGUF header, then check the snapshot's tensor limit.

    Reading the headers up front (the data is still read once, later) means a malformed or oversized file, or a
    snapshot beyond the limits, is refused before a single object is written.
    """
    check_snapshot_files(printable_path(os.fspath(source)), len(files))  # before a file is even opened
    plans = [_plan_file(rel, path) for rel, path in files]
    tensors = sum(len(p.tensors) for p in plans)
    check_snapshot_tensors(printable_path(os.fspath(source)), tensors, sum(p.size for p in plans))
    return plans


def _plan_file(rel: str, path: Path) -> SourcePlan:
    try:
        size = path.stat().st_size
        fh = open(path, "rb")
    except OSError as exc:
        raise SourceError(f"{printable_path(str(path))}: cannot read ({exc.strerror})") from None
    where = printable_path(str(path))
    kind = file_kind(rel)
    with fh:
        if kind == "safetensors":
            header_length = read_header_length(where, fh.read(8), size)
            fh.seek(0)
            header = fh.read(header_length)
            layout = parse_layout(where, header, size)
            digest = hashlib.sha256(header).digest()
            return SourcePlan(rel, path, size, "safetensors", header_length, digest, layout.tensors)
        if kind == "gguf":
            digesting = _DigestingReader(fh)
            gguf = read_gguf_layout(digesting, where, size)
            digesting.seek(gguf.data_start - digesting.position, 1)  # the padding up to the data is header too
            digest = digesting.sha.digest()
            return SourcePlan(rel, path, size, "gguf", gguf.data_start, digest, gguf.tensors)
    return SourcePlan(rel, path, size, "blob")


class _DigestingReader:
    """A file as the GGUF parser reads it, every byte it passes fed to a sha256, so the digest is of exactly the
    header bytes parsed (the parser seeks past metadata arrays; here those bytes are read and hashed instead: a
    tokenizer's few MB, which the push reads again anyway)."""

    def __init__(self, fh: io.BufferedReader) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.position = 0

    def read(self, n: int, /) -> bytes:
        data = self.fh.read(n)
        self.sha.update(data)
        self.position += len(data)
        return data

    def seek(self, offset: int, whence: int = 0, /) -> int:
        if whence != 1 or offset < 0:  # the parser only moves forwards; anything else is a bug here
            raise ValueError("a digesting reader only moves forwards")
        while offset > 0:
            data = self.read(min(offset, 1 << 20))
            if not data:  # past the end: the parser's next read reports it, and a short header cannot match
                break
            offset -= len(data)
        return self.position


def ingest(
    source: str | os.PathLike[str],
    store: ObjectStore,
    progress: Progress | None = None,
    jobs: int | None = None,
    *,
    files: list[tuple[str, Path]] | None = None,
    follow_symlinks: bool = False,
    bases: DeltaBases | None = None,
    warn: Warn | None = None,
    reuse: Mapping[str, Reused] | None = None,
    replacing: Replacing | None = None,
) -> IngestResult:
    """Store every file under ``source`` and return the manifest; nothing is added to the catalog here.

    ``files`` is the caller's ``list_source_files`` result when it already has one (so symlink warnings are given
    once); otherwise ``source`` is listed here with ``follow_symlinks``. With ``bases``, each tensor that has a
    same-name, same-dtype, same-shape tensor there is tried chunk by chunk as a delta against it. A file whose
    path is in ``reuse`` is not read: its entry and objects are the ones given (the caller vouches for them:
    archive/push_index.py). An object named in ``replacing`` is written in place of its stored copy, which the
    caller knows to be damaged (archive/heal.py), and comes back ``replaced``.
    """
    if files is None:
        files = list_source_files(Path(source), follow_symlinks=follow_symlinks)
    plans = plan_files(files, source)
    # Two more threads than cores: a worker waiting on its object's fsync leaves its core to the others. A remote
    # backend (S3) asks for more: there a worker mostly waits for the service's answer.
    workers = jobs or max(max(2, os.cpu_count() or 2) + 2, store.backend.concurrency)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelarc-ingest") as pool:
        writer = _ChunkWriter(
            store, pool, in_flight=max(MAX_IN_FLIGHT, workers + 2), warn=warn, replacing=replacing
        )
        try:
            # a file's entry is assembled once all its chunks are stored, after every file has been read: waiting
            # per file would leave one request in flight for a folder of small files
            taken = {p.rel: reuse[p.rel] for p in plans if reuse and _fits(reuse.get(p.rel), p)}
            read = [_ingest_file(plan, writer, progress, bases) for plan in plans if plan.rel not in taken]
            for plan in plans:
                if plan.rel in taken and progress and not taken[plan.rel].counted:
                    progress(plan.size)
            writer.drain()
            built = {plan.rel: _entry(plan, r.sha256, parts) for plan, parts, r in read}
            entries = [built[p.rel] if p.rel in built else replace(taken[p.rel].entry, path=p.rel) for p in plans]
        except BaseException:
            for fut in writer.pending:
                fut.cancel()
            raise
    store.sync()
    objects = dict(writer.results)
    for hit in taken.values():
        for o in hit.objects:
            objects.setdefault(o.id, o)
    return IngestResult(
        SnapshotManifest(tuple(entries)),
        tuple(objects.values()),
        reads=tuple(r for *_, r in read),
        reused=len(taken),
    )


class _HashingReader:
    """Reads one file in order; every piece it reads goes into the file's sha256, and comes with its own id when
    ``pair()`` says so (``_ChunkWriter.pair_hashes``; None: the pool hashes it)."""

    def __init__(
        self, fh: io.BufferedReader, path: Path, progress: Progress | None, pair: Callable[[], bool]
    ) -> None:
        self.fh = fh
        self.path = path
        self.sha = sha256_stream()
        self.read_bytes = 0
        self.progress = progress
        self.pair = pair

    def read_exact(self, n: int) -> tuple[bytearray, ObjectId]:
        """The next ``n`` bytes, and their id (always: a safetensors header is checked against its digest)."""
        data = bytearray(n)
        oid = self._read_into(memoryview(data), pair=True)
        assert oid is not None
        return data, oid

    def chunks(
        self, n: int, buffers: Callable[[int], bytearray]
    ) -> Iterator[tuple[memoryview, bytearray, ObjectId | None]]:
        """The next ``n`` bytes in chunks read into buffers from ``buffers`` (given each chunk's size): (the chunk,
        the buffer it lives in, the chunk's id or None)."""
        remaining = n
        while remaining:
            take = min(CHUNK_SIZE, remaining)
            buf = buffers(take)
            view = memoryview(buf)[:take]
            oid = self._read_into(view, pair=self.pair())
            yield view, buf, oid
            remaining -= take

    def _read_into(self, view: memoryview, *, pair: bool) -> ObjectId | None:
        """Fill ``view`` from the file, feed it to the file's sha256 and report progress; with ``pair``, the id of
        what was read, hashed in the same pass. A file that ends early is an error."""
        self._fill(view)
        oid: ObjectId | None = None
        if pair:
            oid = ObjectId.from_digest(update_and_digest(self.sha, view))
        else:
            self.sha.update(view)
        self.read_bytes += len(view)
        if self.progress:
            self.progress(len(view))
        return oid

    def _fill(self, view: memoryview) -> None:
        got = 0
        while got < len(view):
            k = self.fh.readinto(view[got:])
            if not k:
                raise SourceError(
                    f"{printable_path(str(self.path))}: file changed while being read (short read)"
                )
            got += k


def _ingest_file(
    plan: SourcePlan, writer: _ChunkWriter, progress: Progress | None, bases: DeltaBases | None = None
) -> tuple[SourcePlan, list[_PendingPart], FileRead]:
    """Read ``plan``'s file once, handing its chunks to ``writer``; (plan, its parts, and the read: the file's
    sha256 and its stat around the read, for the push index)."""
    path = plan.path
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise SourceError(f"{printable_path(str(path))}: cannot read ({exc.strerror})") from None
    with fh:
        started = time.time()
        before = os.fstat(fh.fileno())
        reader = _HashingReader(fh, path, progress, writer.pair_hashes)
        if plan.kind == "safetensors":
            parts = _safetensors_parts(plan, reader, writer, bases)
        elif plan.kind == "gguf":
            parts = _gguf_parts(plan, reader, writer, bases)
        else:
            parts = [_part(reader, writer, "blob", 0, plan.size, None)]
        if fh.read(1):
            raise SourceError(f"{printable_path(str(path))}: file grew while being read")
        after = os.fstat(fh.fileno())
    if (after.st_size, after.st_mtime_ns, after.st_ctime_ns) != (
        before.st_size,
        before.st_mtime_ns,
        before.st_ctime_ns,
    ):
        # rewritten in place (same size) while read: the bytes read are a mix of two versions that the file never
        # held at once, and the snapshot would record that mix as the file
        raise SourceError(
            f"{printable_path(str(path))}: file changed while being read; push again once it is written"
        )
    return plan, parts, FileRead(path, plan.rel, before, after, started, reader.sha.hexdigest())


def _fits(hit: Reused | None, plan: SourcePlan) -> bool:
    """Whether an earlier snapshot's entry can stand for ``plan``'s file as it is listed now: its size and kind, and
    for a safetensors or GGUF file the tensors the header parsed here lists (``plan_files`` read it anyway). The
    entry's table is the catalog's word; a read of the file would have made it from this header, so a table that
    says otherwise (a manifest a rebuild before its content check replayed) is never carried into a new snapshot."""
    if hit is None or hit.entry.size != plan.size or hit.entry.kind != plan.kind:
        return False
    if plan.kind == "blob":
        return True
    declared = [(p.name, p.dtype, tuple(p.shape or ()), p.offset, p.length) for p in hit.entry.tensors()]
    return hit.entry.header_length == plan.header_length and declared == _tensor_table(plan)


def _tensor_table(plan: SourcePlan) -> list[tuple[str | None, str | None, tuple[int, ...], int, int]]:
    """(name, dtype, shape, offset, length) of each tensor ``plan``'s header lists, as a manifest's parts say it."""
    return [(t.name, t.dtype, tuple(t.shape), t.begin, t.end - t.begin) for t in plan.tensors]


def _entry(plan: SourcePlan, sha256: str, parts: list[_PendingPart]) -> FileEntry:
    resolved = tuple(_resolve(p) for p in parts)
    return FileEntry(path=plan.rel, size=plan.size, sha256=sha256, kind=plan.kind, parts=resolved)


@dataclass
class _PendingPart:
    kind: str
    offset: int
    length: int
    futures: list[Future[PutResult]]
    name: str | None = None
    dtype: str | None = None
    shape: tuple[int, ...] | None = None


def _part(
    reader: _HashingReader,
    writer: _ChunkWriter,
    kind: str,
    offset: int,
    length: int,
    dtype: str | None,
    bases: tuple[ObjectId, ...] | None = None,
) -> _PendingPart:
    hint = dtype if dtype in FLOAT_DTYPES else None
    futures = [
        writer.submit(chunk, hint, owner, bases[i] if bases and i < len(bases) else None, object_id=oid)
        for i, (chunk, owner, oid) in enumerate(reader.chunks(length, writer.buffer))
    ]
    return _PendingPart(kind, offset, length, futures)


def _tensor_part(
    plan: SourcePlan,
    reader: _HashingReader,
    writer: _ChunkWriter,
    t: TensorEntry | GGUFTensor,
    bases: DeltaBases | None,
) -> _PendingPart:
    chunk_bases = bases.chunks_for(plan.rel, t.name, t.dtype, tuple(t.shape)) if bases else None
    part = _part(reader, writer, "tensor", t.begin, t.end - t.begin, t.dtype, chunk_bases)
    part.name, part.dtype, part.shape = t.name, t.dtype, t.shape
    return part


def _safetensors_parts(
    plan: SourcePlan, reader: _HashingReader, writer: _ChunkWriter, bases: DeltaBases | None = None
) -> list[_PendingPart]:
    header, oid = reader.read_exact(plan.header_length)
    if bytes.fromhex(oid) != plan.header_sha256:  # the header's id is its sha256
        raise SourceError(f"{printable_path(str(plan.path))}: file changed while being read (header)")
    parts = [_PendingPart("header", 0, plan.header_length, [writer.submit(header, None, object_id=oid)])]
    for t in plan.tensors:
        parts.append(_tensor_part(plan, reader, writer, t, bases))
    return parts


def _gguf_parts(
    plan: SourcePlan, reader: _HashingReader, writer: _ChunkWriter, bases: DeltaBases | None = None
) -> list[_PendingPart]:
    """Header, then one part per tensor in file order, with alignment padding as "pad" parts between them.

    One object per tensor chunk means a re-quantisation that keeps some tensors, or two files sharing tensors,
    deduplicate. The header was parsed by ``plan_files`` (it is small; the data is still read once).
    """
    header = _PendingPart("header", 0, plan.header_length, [])
    digest = hashlib.sha256()
    for chunk, owner, oid in reader.chunks(plan.header_length, writer.buffer):
        digest.update(chunk)
        header.futures.append(writer.submit(chunk, None, owner, object_id=oid))
    if digest.digest() != plan.header_sha256:
        # the objects written for it are unreferenced (gc removes them), as for any file changed while read
        raise SourceError(f"{printable_path(str(plan.path))}: file changed while being read (header)")
    parts = [header]
    cursor = plan.header_length
    for t in plan.tensors:
        if t.begin > cursor:
            parts.append(_part(reader, writer, "pad", cursor, t.begin - cursor, None))
        parts.append(_tensor_part(plan, reader, writer, t, bases))
        cursor = t.end
    if plan.size > cursor:
        parts.append(_part(reader, writer, "pad", cursor, plan.size - cursor, None))
    return parts


def _resolve(p: _PendingPart) -> Part:
    chunks = tuple(Chunk(r.id, r.raw_size) for r in (f.result() for f in p.futures))
    return Part(p.kind, p.offset, p.length, chunks, p.name, p.dtype, p.shape)
