"""Request bodies whose time and memory are bounded per server process: uploads, offers, lists of object ids.

The counterpart of api/sending.py. A route buffers a body whole before it parses or stores it (an object must hash
to its id before a byte of it is written), so a client that sends all but the last byte and waits held that buffer
for as long as it kept the socket open: 300 anonymous ``POST /v1/objects/missing`` bodies stopped one byte short
pinned 346 MB, three stalled 200 MiB uploads 621 MB, with no end. Two bounds, each per server process:

- a receive deadline (``MODELARC_RECEIVE_TIMEOUT``, ``MODELARC_RECEIVE_MIN_RATE``): the app's ``receive`` is
  guarded (``guarded_receive``) while a body is still coming, so a client that sends nothing for a whole timeout,
  or less than the minimum rate over one, is answered 408 (``RequestTimeoutError``) and its connection closed; the
  route's half-read buffer goes with the exception. The guard says the client is gone (``http.disconnect``, which
  the route's read raises as ``ClientDisconnect``) and leaves why in the scope (``RECEIVE_FAILED``), where the
  app's handler finds it: an exception raised from ``receive`` itself would reach the app wrapped in the
  ExceptionGroup of the middleware's task group, a 500;
- a memory budget (``MODELARC_RECEIVE_MEMORY``): a route takes a body's size from it before reading the body and
  gives it back once done (``body_memory``); when the budget is spent, a new body waits briefly, then is answered
  503 with ``Retry-After`` (``ServerBusyError``), as a download is when ``MODELARC_SEND_MEMORY`` is.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from starlette.requests import Request
from starlette.types import Message, Receive, Scope

from modelarc.archive.streaming import ADMIT_SECONDS, ResponseMemory
from modelarc.errors import RequestTimeoutError

RECEIVING = "modelarc.receiving"  # scope key: the app's ``BodyLimits``, for the routes that read a body
RECEIVE_FAILED = "modelarc.receive_failed"  # scope key: the ``RequestTimeoutError`` a guarded receive gave up with
_SLACK = 0.001  # seconds: a wait cut off at its deadline may measure a hair short of it


@dataclass(frozen=True)
class BodyLimits:
    """How long a client may take to send a body, and the process's memory for bodies being read."""

    timeout: float  # seconds without a byte, and the window over which ``min_rate`` is averaged
    min_rate: int  # bytes per second, averaged over each window (0: any progress will do)
    memory: ResponseMemory  # bytes of request bodies held at once across the process


def guarded_receive(receive: Receive, scope: Scope, limits: BodyLimits, started: list[bool]) -> Receive:
    """``receive``, giving up once the client has sent nothing for ``limits.timeout`` seconds, or less than
    ``limits.min_rate`` bytes a second over a whole timeout (or, with a Content-Length, less than all that was left
    at that window's start), while its body is still coming: from then on it answers ``http.disconnect``, with the
    ``RequestTimeoutError`` in ``scope[RECEIVE_FAILED]``.

    Only time spent waiting in ``receive`` counts: a route busy between two reads does not use up the client's
    time (the server reads no more of the socket meanwhile). Once the body is complete, or the response has started
    (``started[0]``, set by the app's ``send``: a response that listens for the client hanging up calls ``receive``
    for as long as it sends), this is ``receive`` itself.
    """
    declared = _content_length(scope)
    done = False
    received = 0  # bytes of the body so far
    window_waited = 0.0  # seconds spent waiting in this window
    window_start = 0  # ``received`` when this window began
    idle = 0.0  # seconds spent waiting since the last byte

    def judge() -> None:
        """At the end of a window: enough bytes came in it, or the client is too slow."""
        nonlocal window_waited, window_start
        left = None if declared is None else declared - window_start
        need = max(1, int(limits.min_rate * limits.timeout))
        if left is not None:
            need = max(1, min(need, left))
        if received - window_start < need:
            raise _too_slow(limits)
        window_waited, window_start = 0.0, received

    async def guarded() -> Message:
        if RECEIVE_FAILED in scope:
            return {"type": "http.disconnect"}
        try:
            return await guarded_once()
        except RequestTimeoutError as exc:
            scope[RECEIVE_FAILED] = exc
            return {"type": "http.disconnect"}

    async def guarded_once() -> Message:
        nonlocal done, received, window_waited, idle
        if done or started[0]:
            return await receive()
        while True:
            budget = min(limits.timeout - window_waited, limits.timeout - idle)
            begun = anyio.current_time()
            with anyio.move_on_after(max(budget, 0.0)) as waited:
                message = await receive()  # uvicorn's receive waits on an event: cancelling it loses nothing
            spent = anyio.current_time() - begun
            window_waited += spent
            idle += spent
            if not waited.cancelled_caught:
                break
            if idle >= limits.timeout - _SLACK:
                raise _too_slow(limits)
            if window_waited >= limits.timeout - _SLACK:
                judge()
        if message["type"] != "http.request" or not message.get("more_body", False):
            done = True  # the whole body, or the client gone: nothing more to wait for
            return message
        if body := message.get("body", b""):
            received += len(body)
            idle = 0.0
        if window_waited >= limits.timeout - _SLACK:
            judge()
        return message

    return guarded


def _too_slow(limits: BodyLimits) -> RequestTimeoutError:
    rate = f"at least {limits.min_rate} bytes a second and " if limits.min_rate else ""
    return RequestTimeoutError(
        f"the request body did not arrive in time: send {rate}some bytes every {limits.timeout:g} seconds"
    )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) <= 19 else None
    return None


@asynccontextmanager
async def body_memory(request: Request, size: int) -> AsyncIterator[None]:
    """Hold ``size`` bytes of the process's memory for request bodies while the block runs: ``ServerBusyError``
    (503, ``Retry-After``) when none come free within ``ADMIT_SECONDS``. Nothing is held under an app that sets no
    limits (not an ``ArchiveApp``)."""
    limits: BodyLimits | None = request.scope.get(RECEIVING)
    if limits is None:
        yield
        return
    taken = await limits.memory.take(size, wait=ADMIT_SECONDS)
    try:
        yield
    finally:
        limits.memory.give_back(taken)
