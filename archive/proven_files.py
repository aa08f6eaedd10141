"""Files a push proves unchanged by hashing their chunks on every core, instead of reading them as new files.

A file read as new is hashed twice: its whole-file sha256 on the reading thread, a serial pass, and each chunk's id
on the pool (archive/ingest.py). ``push --rehash`` of an unchanged 4.29 GB model took 3.25-3.5 s against 2.61 s for
sha256 of the files, and a file the push index names but whose stat changed (touched, copied back in place,
downloaded again) was read the same way. When an earlier snapshot's verified manifest has an entry of the file's
size, the file's bytes at that entry's chunk offsets, each hashing to that chunk's id, prove the file holds that
entry's bytes (sha256's collision resistance), so the entry's sha256 is the file's: one hash per byte, and the chunks
are independent, so every core hashes at once. The entry is one this archive recorded, from a manifest read from
the store and verified against its snapshot id: its sha256 is the one of its chunks' bytes, as every reused entry's
is (archive/push_index.py).

The first chunk that differs stops the check of its file, which is then read as a new one: a changed file costs what
was hashed before the difference was found (a fine-tune's first tensor differs; a file changed only at its end is
hashed about twice). Reads are ``pread`` into one buffer per thread, never a memory map: a file truncated under a
map would kill the process with SIGBUS instead of being refused.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from modelarc.archive.ingest import CHUNK_SIZE, Reused
from modelarc.archive.manifest import FileEntry
from modelarc.archive.push_index import FileRead

Progress = Callable[[int], None]

# chunks being hashed or queued at once, per worker: keeps every core fed, and bounds what a changed file wastes
IN_FLIGHT_PER_WORKER = 2


@dataclass(frozen=True)
class Candidate:
    """A source file and the earlier entry it may be: the entry's objects are all in the store, none damaged."""

    rel: str
    path: Path
    reused: Reused


@dataclass(frozen=True)
class Proven:
    """A file whose every byte was read and found to be ``reused.entry``'s: taken as that entry, and remembered by
    the push index as read (``read``)."""

    reused: Reused
    read: FileRead


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
    most ``CHUNK_SIZE`` bytes of buffer per thread)."""

    def __init__(self) -> None:
        self.local = threading.local()

    def digest(self, fd: int, span: _Span) -> bytes | None:
        """sha256 of the ``span`` bytes of ``fd``; None if the file ends before them (truncated meanwhile)."""
        buf: bytearray | None = getattr(self.local, "buf", None)
        if buf is None:
            buf = self.local.buf = bytearray(CHUNK_SIZE)
        view = memoryview(buf)
        sha = hashlib.sha256()
        at, left = span.offset, span.length
        while left:
            piece = view[: min(left, CHUNK_SIZE)]
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


def prove_unchanged(
    candidates: list[Candidate], progress: Progress | None = None, workers: int | None = None
) -> tuple[dict[str, Proven], int]:
    """The candidates whose files hold exactly their entries' bytes, by rel; and how many bytes were hashed in
    files that turned out to differ (a caller's progress bar counts them once more when those files are read).

    A file that cannot be opened, that differs, or that ends early is left out: the push reads it as a new file
    and says what is wrong with it there."""
    if not candidates:
        return {}, 0
    workers = workers or max(1, min(os.cpu_count() or 1, 8))
    reader = _Reader()
    proven: dict[str, Proven] = {}
    wasted = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelarc-prove") as pool:
        for cand in candidates:
            spans = chunk_spans(cand.reused.entry)
            if spans is None:
                continue
            try:
                fd = os.open(cand.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                continue
            try:
                started = time.time()
                before = os.fstat(fd)
                if before.st_size != cand.reused.entry.size:
                    continue
                hashed, same = _hash_in_order(pool, reader, fd, spans, workers * IN_FLIGHT_PER_WORKER, progress)
                after = os.fstat(fd)
            finally:
                os.close(fd)
            if same and after.st_size == cand.reused.entry.size:
                read = FileRead(cand.path, cand.rel, before, after, started, cand.reused.entry.sha256)
                proven[cand.rel] = Proven(cand.reused, read)
            else:
                wasted += hashed
    return proven, wasted


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
    for span in spans:
        pending.append((span, pool.submit(reader.digest, fd, span)))
        if len(pending) >= window and not settle():
            differs = True
            break
    while pending and not differs:
        differs = not settle()
    for _span, fut in pending:  # a difference was found: what is still queued is not needed
        fut.cancel()
    for _span, fut in pending:
        if not fut.cancelled():
            fut.exception()  # wait for it: the caller closes fd next
    return reported, not differs
