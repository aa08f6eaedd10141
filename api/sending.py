"""Response bodies whose memory is bounded per server process: file downloads and stored objects.

Each body is an async generator whose first step takes its memory from the process's ``ResponseMemory``
(archive/streaming.py): the response runs that step before it sends its status line, so a server that holds all it
may answers 503 with ``Retry-After`` (``ServerBusyError``) instead of a 200 it cannot afford. The generator's last
step is an empty piece, whose send returns only once the socket has taken the bytes before it; it then gives its
memory back. A client that stops reading is dropped by the app's send timeout (api/app.py), and the generator is
closed at once, however the response ends.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, BinaryIO

import anyio
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from modelarc.archive.streaming import ADMIT_SECONDS, PIECE_BYTES, ResponseMemory
from modelarc.errors import ObjectMissingError

HEAD_ONLY = "modelarc.head_only"  # scope key: a HEAD request routed to a GET route; send the headers alone
WHOLE_READ_BYTES = (
    16 << 20
)  # an object up to this size is read in one call; larger ones in STREAM_BLOCK pieces
STREAM_BLOCK = 1 << 20


class DownloadResponse(StreamingResponse):
    """A streaming response that runs its body's first step before it sends anything, and closes the body as soon
    as the response ends, however it ends.

    An exception from the first step (``ServerBusyError``, an integrity failure of the first chunk) reaches the
    app's exception handler as any route's would. When a client hangs up, Starlette cancels the sending but leaves
    the generator suspended until the garbage collector finds it, holding what it had; closing it here lets go at
    once. For a HEAD answered by a GET route the body is never started.
    """

    def __init__(self, body: AsyncGenerator[bytes | memoryview, None], **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        self._body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if scope.get(HEAD_ONLY) or scope.get("method") == "HEAD":
                self.body_iterator = _nothing()
            else:
                first = (
                    await self._body.__anext__()
                )  # StopAsyncIteration: not a generator of ours (never empty)
                self.body_iterator = _chain(first, self._body)
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._body.aclose()


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


async def _chain(
    first: bytes | memoryview, rest: AsyncGenerator[bytes | memoryview, None]
) -> AsyncIterator[bytes | memoryview]:
    yield first
    async for piece in rest:
        yield piece


async def stored_object(
    memory: ResponseMemory,
    fh: BinaryIO,
    size: int,
    *,
    prefix: bytes = b"",
    admit: float | None = ADMIT_SECONDS,
) -> AsyncGenerator[bytes | memoryview, None]:
    """``prefix`` (a frame header, or nothing) then the ``size`` bytes of ``fh``, as stored, then an empty piece;
    closes ``fh``. Holds ``size`` bytes (at most two blocks for a larger object) from before the read until the
    socket has taken them."""
    with fh:
        cost = len(prefix) + (size if size <= WHOLE_READ_BYTES else 2 * STREAM_BLOCK)
        taken = await memory.take(cost, wait=admit)
        try:
            if prefix:
                yield prefix
            if size <= WHOLE_READ_BYTES:  # the usual 8 MiB chunk: one read off the event loop, sent in pieces
                data = await run_in_threadpool(fh.read, size)
                if len(data) != size:
                    raise ObjectMissingError(
                        f"an object changed while it was sent ({len(data)} of {size} bytes)"
                    )
                view = memoryview(data)
                for at in range(0, size, PIECE_BYTES):
                    yield view[at : at + PIECE_BYTES]  # Starlette sends memoryviews as they are
                del view, data
            else:
                sent = 0
                while sent < size and (
                    block := await run_in_threadpool(fh.read, min(STREAM_BLOCK, size - sent))
                ):
                    sent += len(block)
                    yield block
                if sent != size:  # the file shrank under us: the stream cannot be framed truthfully any more
                    raise ObjectMissingError(f"an object changed while it was sent ({sent} of {size} bytes)")
            yield b""  # returns once the socket has taken the bytes before: none of them is left in the process
        finally:
            memory.give_back(taken)


async def held_bytes(
    memory: ResponseMemory, body: bytes, *, admit: float | None = ADMIT_SECONDS
) -> AsyncGenerator[bytes | memoryview, None]:
    """``body``, already in memory (a delta rebuilt on its own), counted like a stored object while it is sent."""
    taken = await memory.take(len(body), wait=admit)
    try:
        view = memoryview(body)
        for at in range(0, len(body), PIECE_BYTES):
            yield view[at : at + PIECE_BYTES]
        yield b""
    finally:
        memory.give_back(taken)
