"""Whether a file holds exactly a manifest entry's bytes, proven by hashing the entry's chunks at their offsets on
every core at once, instead of one serial whole-file sha256.

If every chunk of an entry, hashed at its offset in the file, equals its chunk id, the file holds the entry's bytes
(sha256's collision resistance), so the entry's sha256 is the file's. That holds for an entry whose sha256 is the
one of its chunks' bytes: one of a snapshot the catalog records, since every way a manifest gets into the catalog
checks it (a local push builds it from the bytes; a received commit and rebuild-catalog rebuild every file). The
chunks are independent, so the pass uses every core, where a whole-file sha256 is one serial stream (4.29 GB:
3.25-3.5 s for sha256 beside the chunk ids, against 1.3-2.3 s proven). Used by a push taking a file an earlier
snapshot holds (archive/proven_files.py). A pull keeping a file already in place still hashes it whole: what it
leaves is checked against the sha256 the signature covers, not against the catalog's word on the chunks.

The first chunk that differs stops the check of its file: a changed file costs what was hashed before the
difference was found. Reads are ``pread`` into one buffer per thread, never a memory map: a file truncated under a
map would kill the process with SIGBUS instead of failing the check.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from modelarc.archive.manifest import FileEntry

Progress = Callable[[int], None]

# buffer per reading thread: a chunk longer than this (a manifest from elsewhere may have up to 256 MiB) is read in
# pieces of it
PIECE = 8 * 1024 * 1024
# chunks being hashed or queued at once, per worker: keeps every core fed, and bounds what a changed file wastes
IN_FLIGHT_PER_WORKER = 2


@dataclass(frozen=True)
class FileProof:
    """A file found to hold an entry's bytes: its stat just before and just after the read, and when it began."""

    before: os.stat_result
    after: os.stat_result
    started: float  # time.time() before the first byte was read


def prove_files(
    items: Sequence[tuple[Path, FileEntry]], progress: Progress | None = None, workers: int | None = None
) -> tuple[list[FileProof | None], int]:
    """For each (path, entry), a ``FileProof`` if the file holds exactly the entry's bytes, else None; and how many
    bytes were hashed in files that turned out to differ (reported to ``progress`` as read, as every byte hashed
    is). A file that cannot be opened, differs, is of another size or ends early gets None."""
    if not items:
        return [], 0
    workers = workers or max(1, min(_usable_cpus(), 8))
    reader = _Reader()
    proofs: list[FileProof | None] = []
    wasted = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelarc-prove") as pool:
        for path, entry in items:
            proof, hashed = _prove(pool, reader, path, entry, workers * IN_FLIGHT_PER_WORKER, progress)
            proofs.append(proof)
            if proof is None:
                wasted += hashed
    return proofs, wasted


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask: a container's or `taskset`'s), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _prove(
    pool: ThreadPoolExecutor, reader: _Reader, path: Path, entry: FileEntry, window: int, progress: Progress | None
) -> tuple[FileProof | None, int]:
    spans = chunk_spans(entry)
    if spans is None:
        return None, 0
    try:
        # O_NONBLOCK: a FIFO put where the file was opens at once (and is no regular file) instead of hanging
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None, 0
    try:
        started = time.time()
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode) or before.st_size != entry.size:
            return None, 0
        hashed, same = _hash_in_order(pool, reader, fd, spans, window, progress)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    # a file written while it was read may hold bytes of both versions, as a read as new would refuse ("file changed
    # while being read"): only one whose stat did not move is proven
    if same and _stat_key(after) == _stat_key(before):
        return FileProof(before, after, started), hashed
    return None, hashed


@dataclass(frozen=True)
class _Span:
    offset: int
    length: int
    digest: bytes  # the chunk id's 32 bytes


def chunk_spans(entry: FileEntry) -> list[_Span] | None:
    """The entry's chunks with their offsets in the file, in file order; None unless they tile exactly the file's
    ``size`` bytes (a manifest is checked for this when read, and a proof must not rest on it unchecked)."""
    spans: list[_Span] = []
    at = 0
    for part in sorted(entry.parts, key=lambda p: p.offset):
        if part.offset != at:
            return None
        for chunk in part.chunks:
            spans.append(_Span(at, chunk.length, bytes.fromhex(chunk.id)))
            at += chunk.length
        if at != part.offset + part.length:
            return None
    return spans if at == entry.size else None


class _Reader:
    """pread of one chunk's bytes into its thread's own buffer, fed to sha256 piece by piece (any chunk length, at
    most ``PIECE`` bytes of buffer per thread)."""

    def __init__(self) -> None:
        self.local = threading.local()

    def digest(self, fd: int, span: _Span) -> bytes | None:
        """sha256 of the ``span`` bytes of ``fd``; None if the file ends before them (truncated meanwhile)."""
        buf: bytearray | None = getattr(self.local, "buf", None)
        if buf is None:
            buf = self.local.buf = bytearray(PIECE)
        view = memoryview(buf)
        sha = hashlib.sha256()
        at, left = span.offset, span.length
        while left:
            piece = view[: min(left, PIECE)]
            try:
                got = os.preadv(fd, [piece], at)
            except OSError:  # an unreadable file is read as a new one, which says what is wrong with it
                return None
            if got <= 0:
                return None
            sha.update(piece[:got])
            at += got
            left -= got
        return sha.digest()


def _hash_in_order(
    pool: ThreadPoolExecutor,
    reader: _Reader,
    fd: int,
    spans: list[_Span],
    window: int,
    progress: Progress | None,
) -> tuple[int, bool]:
    """Hash ``spans`` on the pool, at most ``window`` at once, stopping at the first that differs: (bytes hashed
    and reported to ``progress``, whether every chunk matched). Returns only once no worker reads ``fd``."""
    pending: deque[tuple[_Span, Future[bytes | None]]] = deque()
    reported = 0

    def settle() -> bool:
        nonlocal reported
        span, fut = pending.popleft()
        got = fut.result()
        reported += span.length
        if progress is not None:
            progress(span.length)  # read either way
        return got == span.digest

    differs = False
    try:
        for span in spans:
            pending.append((span, pool.submit(reader.digest, fd, span)))
            if len(pending) >= window and not settle():
                differs = True
                break
        while pending and not differs:
            differs = not settle()
    finally:  # a difference was found, or the push is stopping (^C): what is still queued is not needed
        for _span, fut in pending:
            fut.cancel()
        for _span, fut in pending:
            if not fut.cancelled():
                fut.exception()  # wait for it: the caller closes fd next, and the number may be reused
    return reported, not differs
