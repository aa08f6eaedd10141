"""Ingest a model folder or a single file into the store and build its manifest, reading each file once.

The main thread reads each file sequentially and feeds the whole-file sha256; every chunk (at most ``CHUNK_SIZE``
bytes of one tensor, header or blob) goes to a worker pool that hashes it, skips it when the store already has it,
and otherwise encodes and writes it. hashlib, numpy and the compressors release the GIL, so both cores work, and at
most ``MAX_IN_FLIGHT`` chunks are held in memory at once.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from modelarc.archive.gguf_format import read_layout as read_gguf_layout
from modelarc.archive.manifest import Chunk, FileEntry, Part, SnapshotManifest, path_problem, printable_path
from modelarc.archive.safetensors_format import parse_layout, read_header_length
from modelarc.errors import SourceError
from modelarc.storage import ObjectStore, PutResult
from modelarc.storage.codecs.floatplanes import FLOAT_DTYPES

CHUNK_SIZE = 8 * 1024 * 1024  # a multiple of every element size; chunk boundaries are relative to the part
MAX_IN_FLIGHT = 6
SKIPPED_DIRS = {".git", ".cache"}

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ObjectWrite:
    id: str
    raw_size: int
    stored_size: int
    codec: str
    added: bool


@dataclass(frozen=True)
class IngestResult:
    manifest: SnapshotManifest
    objects: tuple[ObjectWrite, ...]  # every chunk object the manifest references, once each

    @property
    def stored_bytes_added(self) -> int:
        return sum(o.stored_size for o in self.objects if o.added)


def list_source_files(source: Path) -> list[tuple[str, Path]]:
    """(relative posix path, absolute path) for every regular file to archive, sorted by path."""
    if not source.exists():
        raise SourceError(f"{source}: no such file or folder")
    if source.is_file():
        return [(_archivable_name(source.name, source), source)]
    if not source.is_dir():
        raise SourceError(f"{source}: not a regular file or folder")
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(source, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for name in filenames:
            full = Path(dirpath) / name
            if not full.is_file():  # broken symlinks, sockets, fifos
                continue
            found.append((_archivable_name(full.relative_to(source).as_posix(), full), full))
    if not found:
        raise SourceError(f"{source}: folder has no files to archive")
    return sorted(found)


def _archivable_name(rel: str, full: Path) -> str:
    """``rel`` if a restore can recreate it exactly; a clear error naming the file otherwise."""
    problem = path_problem(rel)
    if problem is None:
        return rel
    shown = printable_path(str(full))
    if problem == "is not valid UTF-8":
        raise SourceError(
            f"{shown}: file name is not valid UTF-8; rename it (archived names are UTF-8, see docs/FORMAT.md)"
        )
    raise SourceError(f"{shown}: file name cannot be archived portably: it {problem}")


def total_size(files: list[tuple[str, Path]]) -> int:
    return sum(p.stat().st_size for _, p in files)


class _ChunkWriter:
    """Hash-check-encode-write chunks on a pool while the caller keeps reading."""

    def __init__(self, store: ObjectStore, pool: ThreadPoolExecutor) -> None:
        self.store = store
        self.pool = pool
        self.pending: deque[Future[PutResult]] = deque()
        self.results: dict[str, ObjectWrite] = {}
        self.lock = threading.Lock()

    def submit(self, data: bytes, dtype: str | None) -> Future[PutResult]:
        while len(self.pending) >= MAX_IN_FLIGHT:
            self.pending.popleft().result()
        fut = self.pool.submit(self._write, data, dtype)
        self.pending.append(fut)
        return fut

    def _write(self, data: bytes, dtype: str | None) -> PutResult:
        result = self.store.put(data, dtype_hint=dtype)
        with self.lock:
            prev = self.results.get(result.id)
            if prev is None or (result.added and not prev.added):
                self.results[result.id] = ObjectWrite(
                    result.id, result.raw_size, result.stored_size, result.codec, result.added
                )
        return result

    def drain(self) -> None:
        while self.pending:
            self.pending.popleft().result()


def ingest(
    source: str | os.PathLike[str],
    store: ObjectStore,
    progress: Progress | None = None,
    jobs: int | None = None,
) -> IngestResult:
    """Store every file under ``source`` and return the manifest; nothing is added to the catalog here."""
    files = list_source_files(Path(source))
    workers = jobs or max(2, os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelarc-ingest") as pool:
        writer = _ChunkWriter(store, pool)
        try:
            entries = [_ingest_file(rel, path, writer, progress) for rel, path in files]
            writer.drain()
        except BaseException:
            for fut in writer.pending:
                fut.cancel()
            raise
    store.sync()
    return IngestResult(SnapshotManifest(tuple(entries)), tuple(writer.results.values()))


class _HashingReader:
    def __init__(self, fh: BinaryIO, path: Path, progress: Progress | None) -> None:
        self.fh = fh
        self.path = path
        self.sha = hashlib.sha256()
        self.read_bytes = 0
        self.progress = progress

    def read_exact(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise SourceError(f"{self.path}: file changed while being read (short read)")
        self.sha.update(data)
        self.read_bytes += n
        if self.progress:
            self.progress(n)
        return data

    def chunks(self, n: int) -> Iterator[bytes]:
        remaining = n
        while remaining:
            take = min(CHUNK_SIZE, remaining)
            yield self.read_exact(take)
            remaining -= take


def _ingest_file(rel: str, path: Path, writer: _ChunkWriter, progress: Progress | None) -> FileEntry:
    try:
        size = path.stat().st_size
        fh = open(path, "rb")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        reader = _HashingReader(fh, path, progress)
        if rel.endswith(".safetensors"):
            parts = _safetensors_parts(rel, path, size, reader, writer)
            kind = "safetensors"
        elif rel.endswith(".gguf"):
            parts = _gguf_parts(path, size, reader, writer)
            kind = "gguf"
        else:
            parts = [_part(reader, writer, "blob", 0, size, None)]
            kind = "blob"
        if fh.read(1):
            raise SourceError(f"{path}: file grew while being read")
    resolved = tuple(_resolve(p) for p in parts)
    return FileEntry(path=rel, size=size, sha256=reader.sha.hexdigest(), kind=kind, parts=resolved)


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
    reader: _HashingReader, writer: _ChunkWriter, kind: str, offset: int, length: int, dtype: str | None
) -> _PendingPart:
    hint = dtype if dtype in FLOAT_DTYPES else None
    futures = [writer.submit(chunk, hint) for chunk in reader.chunks(length)]
    return _PendingPart(kind, offset, length, futures)


def _safetensors_parts(
    rel: str, path: Path, size: int, reader: _HashingReader, writer: _ChunkWriter
) -> list[_PendingPart]:
    prefix = reader.fh.peek(8)[:8] if hasattr(reader.fh, "peek") else b""
    header_length = read_header_length(str(path), prefix, size)
    header = reader.read_exact(header_length)
    layout = parse_layout(str(path), header, size)
    parts = [_PendingPart("header", 0, header_length, [writer.submit(header, None)])]
    for t in layout.tensors:
        part = _part(reader, writer, "tensor", t.begin, t.nbytes, t.dtype)
        part.name, part.dtype, part.shape = t.name, t.dtype, t.shape
        parts.append(part)
    return parts


def _gguf_parts(path: Path, size: int, reader: _HashingReader, writer: _ChunkWriter) -> list[_PendingPart]:
    """Header, then one part per tensor in file order, with alignment padding as "pad" parts between them.

    One object per tensor chunk means a re-quantisation that keeps some tensors, or two files sharing tensors,
    deduplicate. The header is parsed from a second handle first (it is small; the data is still read once).
    """
    with open(path, "rb") as head:
        layout = read_gguf_layout(head, str(path), size)
    parts = [_part(reader, writer, "header", 0, layout.data_start, None)]
    cursor = layout.data_start
    for t in layout.tensors:
        if t.begin > cursor:
            parts.append(_part(reader, writer, "pad", cursor, t.begin - cursor, None))
        part = _part(reader, writer, "tensor", t.begin, t.end - t.begin, t.dtype)
        part.name, part.dtype, part.shape = t.name, t.dtype, t.shape
        parts.append(part)
        cursor = t.end
    if size > cursor:
        parts.append(_part(reader, writer, "pad", cursor, size - cursor, None))
    return parts


def _resolve(p: _PendingPart) -> Part:
    chunks = tuple(Chunk(r.id, r.raw_size) for r in (f.result() for f in p.futures))
    return Part(p.kind, p.offset, p.length, chunks, p.name, p.dtype, p.shape)
