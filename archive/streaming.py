"""A file's bytes for many concurrent downloads, with memory bounded per download and per process.

Why not ``restore.iter_chunk_bytes``: it decodes ``READ_AHEAD`` (6) chunks ahead on a pool of its own, which is right
for one pull writing to disk and wrong for a server that runs one per download: 16 concurrent downloads of a 269 MB
file held about 85 MB each (1.46 GB), and a slow client made the server decode ahead of it all the same.

The memory model (docs/API.md, "Serving many clients"), which the tests check by counting, not by timing:

- One ``ChunkDecoder`` per server process owns the decode threads: at most ``slots`` chunks are read from the store,
  decoded and verified at once, however many downloads are open (``MODELARC_DECODE_SLOTS``, default 2 per CPU).
  A download waiting for a slot holds no chunk: its request is an object id in a queue.
- ``ChunkDecoder.stream`` asks for a chunk only when its consumer has taken every byte of the one before (the server's
  ``send`` returns once the socket has drained, so a slow client is backpressure all the way down to the decoder).
  A download holds at most ``MAX_HELD_PER_STREAM`` (2) decoded chunks: the one being sent and the next, decoded
  ahead only while the decoder has nothing else queued or running, so a lone download overlaps decoding with
  sending and a busy server decodes nothing that cannot be sent yet (about one chunk per download under load).
- Bytes leave in pieces of at most ``PIECE_BYTES`` copied out of the chunk, so what the server's socket buffer
  holds beyond the chunk is one piece, and it never keeps a chunk alive by reference.

Integrity is what the store gives: every chunk is re-hashed against its id as it is decoded (``ObjectCorruptError``
otherwise) and its length checked against the manifest; a Range decodes only the chunks that overlap it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from modelarc.archive.manifest import Chunk, FileEntry
from modelarc.errors import IntegrityError
from modelarc.storage import ObjectStore

MAX_HELD_PER_STREAM = 2
PIECE_BYTES = 1 << 20


@dataclass(frozen=True)
class DecodeCounts:
    """What a decoder has done and holds, at one moment: the numbers the memory bound is stated in.

    ``held`` counts chunks a download has asked for and not yet let go (queued, decoding or being sent): an upper
    bound on the decoded chunks alive. ``peak_held_per_stream`` is the most any one download held at once.
    ``sent`` is the bytes handed to the server to send, which a client that stops reading stops within its socket
    buffers.
    """

    decoding: int
    peak_decoding: int
    held: int
    peak_held: int
    peak_held_per_stream: int
    decoded: int
    streams: int
    sent: int


class ChunkDecoder:
    """The process's decode threads: at most ``slots`` chunks are read, decoded and verified at once.

    >>> decoder = ChunkDecoder(slots=4)
    >>> async for piece in decoder.stream(archive.store, entry, 0, entry.size): ...
    """

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a decoder needs at least one slot, not {slots}")
        self.slots = slots
        self._pool = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="modelarc-decode")
        self._lock = threading.Lock()
        self._pending = 0  # submitted and not finished (queued or decoding)
        self._decoding = self._peak_decoding = self._decoded = 0
        self._held = self._peak_held = self._peak_held_per_stream = self._streams = self._sent = 0

    def counts(self) -> DecodeCounts:
        with self._lock:
            return DecodeCounts(
                self._decoding,
                self._peak_decoding,
                self._held,
                self._peak_held,
                self._peak_held_per_stream,
                self._decoded,
                self._streams,
                self._sent,
            )

    def is_idle(self) -> bool:
        """Nothing queued or decoding: a download may decode its next chunk ahead without delaying another."""
        with self._lock:
            return self._pending == 0

    def close(self) -> None:
        """Stop the threads; queued decodes are dropped (their downloads have ended with the server)."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, store: ObjectStore, chunk: Chunk) -> Future[bytes | bytearray]:
        with self._lock:
            self._pending += 1
        future = self._pool.submit(self._decode, store, chunk)
        future.add_done_callback(self._finished)
        return future

    def _finished(self, _future: Future[bytes | bytearray]) -> None:
        with self._lock:
            self._pending -= 1

    def _decode(self, store: ObjectStore, chunk: Chunk) -> bytes | bytearray:
        with self._lock:
            self._decoding += 1
            self._peak_decoding = max(self._peak_decoding, self._decoding)
        try:
            data = store.get(chunk.id)  # re-hashed against its id: ObjectCorruptError otherwise
        finally:
            with self._lock:
                self._decoding -= 1
                self._decoded += 1
        if len(data) != chunk.length:
            raise IntegrityError(f"object {chunk.id} is {len(data)} bytes, manifest says {chunk.length}")
        return data

    async def stream(
        self, store: ObjectStore, entry: FileEntry, start: int, end: int
    ) -> AsyncGenerator[bytes, None]:
        """Bytes ``[start, end)`` of ``entry``, decoded as the consumer takes them (see the module's memory model).

        Each chunk is verified by the store as it is decoded; an ``IntegrityError`` ends the stream where it happens.
        """
        wanted = overlapping_chunks(entry, start, end)
        queued: deque[tuple[int, Chunk, asyncio.Future[bytes | bytearray]]] = deque()
        held = 0

        def ask() -> None:
            nonlocal held
            nxt = next(wanted, None)
            if nxt is not None:
                held += 1
                self._hold(held)  # counted from the request: a bound on the chunks this stream can have alive
                queued.append((*nxt, asyncio.wrap_future(self.submit(store, nxt[1]))))

        self._open_stream()
        try:
            ask()
            while queued:
                offset, chunk, future = queued.popleft()
                try:
                    data = await future
                    if not queued and held < MAX_HELD_PER_STREAM and self.is_idle():
                        ask()  # decode the next while this one is sent, only when no other download waits
                    view = memoryview(data)
                    lo, hi = max(start - offset, 0), min(end - offset, chunk.length)
                    for at in range(lo, hi, PIECE_BYTES):
                        piece = bytes(view[at : min(at + PIECE_BYTES, hi)])
                        self._count_sent(len(piece))
                        yield piece
                    view.release()
                    del data, view
                finally:
                    held -= 1
                    self._release()
                if not queued:
                    ask()
        finally:
            for _offset, _chunk, future in queued:  # the download ended early: its read-ahead is not needed
                future.cancel()
                self._release()
            self._close_stream()

    def _open_stream(self) -> None:
        with self._lock:
            self._streams += 1

    def _close_stream(self) -> None:
        with self._lock:
            self._streams -= 1

    def _hold(self, stream_held: int) -> None:
        with self._lock:
            self._held += 1
            self._peak_held = max(self._peak_held, self._held)
            self._peak_held_per_stream = max(self._peak_held_per_stream, stream_held)

    def _count_sent(self, n: int) -> None:
        with self._lock:
            self._sent += n

    def _release(self) -> None:
        with self._lock:
            self._held -= 1


def overlapping_chunks(entry: FileEntry, start: int, end: int) -> Iterator[tuple[int, Chunk]]:
    """``(offset in the file, chunk)`` for each chunk holding a byte of ``[start, end)``, in file order."""
    pos = 0
    for part in entry.parts:
        for chunk in part.chunks:
            if pos >= end:
                return
            if pos + chunk.length > start:
                yield pos, chunk
            pos += chunk.length
