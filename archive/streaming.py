"""A file's bytes for many concurrent downloads, with memory bounded per download and per process.

Why not ``restore.iter_chunk_bytes``: it decodes ``READ_AHEAD`` (6) chunks ahead on a pool of its own, which is right
for one pull writing to disk and wrong for a server that runs one per download: 16 concurrent downloads of a 269 MB
file took the server from 108 MB to 1.8 GB (about 100 MB each), and it decoded ahead of a slow client all the same.

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

- Per server process: at most ``ResponseMemory.limit`` bytes (``MODELARC_SEND_MEMORY``, default 1 GiB) held by all
  responses together. A download takes its share before it sends its status: its largest chunk plus one piece (the
  one on its way through the server's socket buffer), held until its last byte has left the process; a read-ahead
  takes more only when it fits at once. A download that cannot get its share within ``ADMIT_SECONDS`` is answered
  503 with ``Retry-After``; one that has begun never waits for memory again. The held counts above bound how many
  chunks a download keeps; this bounds their bytes across all downloads, whatever the chunk size a pusher chose (up
  to 256 MiB) and however many clients stop reading. Clients that stop reading for good are dropped by the server's
  send timeout (api/app.py), which frees what they held.

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
from modelarc.errors import IntegrityError, ServerBusyError
from modelarc.storage import ObjectStore

MAX_HELD_PER_STREAM = 2
PIECE_BYTES = 1 << 20
UNBOUNDED_MEMORY = 1 << 62
ADMIT_SECONDS = 2.0  # how long a new response waits for memory before it is answered 503
RETRY_AFTER_SECONDS = 5


class ResponseMemory:
    """Bytes that responses in flight may hold in memory at once, across one server process: a counting semaphore
    in bytes, shared by the Hub file route's decoded chunks and the object routes' stored objects.

    Thread-safe (a route on the thread pool may give back what an event-loop task took); waiters are woken in the
    order they came, each on its own event loop. A request for more than the whole limit is served as the whole
    limit, alone: a 256 MiB chunk under a 128 MiB limit is still sent, never refused for good.

    >>> memory = ResponseMemory(1 << 30)
    >>> await memory.take(n, wait=ADMIT_SECONDS)   # ServerBusyError if it did not fit in time
    >>> ...; memory.give_back(n)
    """

    def __init__(self, limit: int, what: str = "responses in flight") -> None:
        if limit < 1:
            raise ValueError(f"response memory needs at least one byte, not {limit}")
        self.limit = limit
        self.what = what  # what the bytes are for, as a 503 says it (request bodies count in one of their own)
        self._lock = threading.Lock()
        self._held = self._peak = 0
        self._waiters: deque[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    @property
    def held(self) -> int:
        with self._lock:
            return self._held

    @property
    def peak(self) -> int:
        with self._lock:
            return self._peak

    def _fits(self, n: int) -> bool:
        return self._held + n <= self.limit

    def _grant(self, n: int) -> None:
        self._held += n
        self._peak = max(self._peak, self._held)

    def try_take(self, n: int) -> int:
        """Take ``n`` bytes if they fit now and nobody waits before us: the bytes taken (give them back), or 0."""
        n = min(n, self.limit)
        with self._lock:
            if self._waiters or not self._fits(n):
                return 0
            self._grant(n)
            return n

    async def take(self, n: int, *, wait: float | None) -> int:
        """Take ``n`` bytes, waiting at most ``wait`` seconds (None: as long as it takes); the bytes taken, which
        the caller gives back. ``ServerBusyError`` when the wait ran out: nothing is taken then."""
        n = min(n, self.limit)
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._waiters and self._fits(n):
                self._grant(n)
                return n
            future: asyncio.Future[None] = loop.create_future()
            waiter = (n, loop, future)
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(future), wait)
        except BaseException as exc:  # out of time, or cancelled: give back what came meanwhile
            with self._lock:
                granted = waiter not in self._waiters
                if not granted:
                    self._waiters.remove(waiter)
            if granted:
                self.give_back(n)
            else:
                self._wake()  # the first waiter left: the next may fit
            if isinstance(exc, TimeoutError):
                raise ServerBusyError(
                    f"the server already holds the memory it may ({self.limit} bytes) for {self.what}; "
                    f"try again in {RETRY_AFTER_SECONDS} seconds",
                    retry_after=RETRY_AFTER_SECONDS,
                ) from None
            raise
        return n

    def give_back(self, n: int) -> None:
        with self._lock:
            self._held -= n
        self._wake()

    def _wake(self) -> None:
        """Grant waiters in order while the first one fits (first come, first served: a big one is not starved)."""
        granted = []
        with self._lock:
            while self._waiters and self._fits(self._waiters[0][0]):
                n, loop, future = self._waiters.popleft()
                self._grant(n)
                granted.append((n, loop, future))
        for n, loop, future in granted:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # its event loop has closed (a server shut down): nobody will give it back
                self.give_back(n)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(frozen=True)
class DecodeCounts:
    """What a decoder has done and holds, at one moment: the numbers the memory bound is stated in.

    ``held`` counts chunks a download has asked for and not yet let go (queued, decoding or being sent): an upper
    bound on the decoded chunks alive. ``peak_held_per_stream`` is the most any one download held at once.
    ``sent`` counts the bytes handed to the server to send: a client that stops reading stops it within the socket
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

    def __init__(self, slots: int, memory: ResponseMemory | None = None) -> None:
        """``memory``: the process's response memory, shared with other routes; by default one of its own with
        ``UNBOUNDED_MEMORY`` bytes (a decoder used outside a server)."""
        if slots < 1:
            raise ValueError(f"a decoder needs at least one slot, not {slots}")
        self.slots = slots
        self.memory = memory or ResponseMemory(UNBOUNDED_MEMORY)
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
        self,
        store: ObjectStore,
        entry: FileEntry,
        start: int,
        end: int,
        *,
        admit: float | None = ADMIT_SECONDS,
    ) -> AsyncGenerator[bytes, None]:
        """Bytes ``[start, end)`` of ``entry``, decoded as the consumer takes them (see the module's memory model).

        Each chunk is verified by the store as it is decoded; an ``IntegrityError`` ends the stream where it happens.
        The first step takes the download's memory, waiting at most ``admit`` seconds (``ServerBusyError`` then), and
        yields an empty piece: a response primes the stream that far before it sends its status, so that can still
        be a 503, and the status never waits for a decode. That memory is its
        largest chunk and one piece, held to the end, so a download that has begun never waits for memory again
        (one that did would hold its piece while queued behind others); only a read-ahead takes more, when it fits.
        """
        wanted = list(overlapping_chunks(entry, start, end))
        queued: deque[tuple[int, Chunk, int, asyncio.Future[bytes | bytearray]]] = deque()
        held = 0
        ahead_held = 0  # memory taken for a read-ahead chunk, beyond the download's own

        def submit(nxt: tuple[int, Chunk], extra: int) -> None:
            nonlocal held
            held += 1
            self._hold(held)  # counted from the request: a bound on the chunks this stream can have alive
            queued.append((*nxt, extra, asyncio.wrap_future(self.submit(store, nxt[1]))))

        self._open_stream()
        own = 0
        try:
            if wanted:  # the piece's share is held until the last yield below, when the socket has taken it
                largest = max(chunk.length for _offset, chunk in wanted)
                own = await self.memory.take(largest + min(PIECE_BYTES, end - start), wait=admit)
            yield b""  # admitted: the response may send its status now, before a chunk is decoded
            todo = iter(wanted)
            if (nxt := next(todo, None)) is not None:
                submit(nxt, 0)
                nxt = next(todo, None)
            while queued:
                offset, chunk, extra, future = queued.popleft()
                try:
                    data = await future
                    if nxt is not None and not queued and held < MAX_HELD_PER_STREAM and self.is_idle():
                        # decode the next while this one is sent, only when no other download waits and it fits
                        if taken := self.memory.try_take(nxt[1].length):
                            ahead_held += taken
                            submit(nxt, taken)
                            nxt = next(todo, None)
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
                    self.memory.give_back(extra)
                    ahead_held -= extra
                if not queued and nxt is not None:
                    submit(nxt, 0)  # the download's own memory holds it: no chunk of it is held now
                    nxt = next(todo, None)
            # the server's send returns once the socket has taken the piece before: after this, no byte of the
            # download is left in the process, and its memory may go back
            yield b""
        finally:
            for _offset, _chunk, _extra, future in queued:  # ended early: its read-ahead is not needed
                future.cancel()
                self._release()
            self.memory.give_back(own + ahead_held)
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
