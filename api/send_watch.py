"""The send timeout's watcher: whether a client keeps taking a response's body, one watcher per response.

The server's ``send`` returns only once the transport's buffer has drained, so bounding the whole call dropped any
client slower than one 1 MiB piece per timeout (~17 KiB/s at 60 s). What is watched instead is the client taking
bytes: what was handed to the server minus what is still to be delivered (``unsent``), window by window. Without a
floor a client acknowledging a few bytes per timeout (~140 B/s with a small window) held its share of
MODELARC_SEND_MEMORY for ever, and three of them could keep every other download at 503.

Why one watcher per response and not per piece: a task group, a watcher task and its cancellation for every 1 MiB
piece cost 62-74 us each, about 17% of the server's busy time in a BF16 pull. The watcher is a timer on the event
loop (``call_later``), not a task: a task would need a task group around the whole request, which hands the app's
own exceptions out wrapped in an ``ExceptionGroup``. Each piece only enters a cancel scope, which the timer cancels
when the client has stalled. A window spans pieces, so the floor holds whatever the piece size; and only time spent
waiting on the client (inside a send) counts towards it, never time the app took to produce the next piece.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios

import anyio
from starlette.types import Message, Send


class SendWatch:
    """Follows one response's body out: ``send`` each piece through it, ``close`` it when the response ends.

    ``send`` returns True once the client took less than ``min_rate`` bytes a second over a whole ``timeout`` of
    waiting on it (or, of what it could have taken in that window, less than all of it); the piece in flight is then
    given up on, and the caller drops the connection.
    """

    def __init__(self, transport: asyncio.Transport, timeout: float, min_rate: int) -> None:
        self._transport = transport
        self._sock = transport.get_extra_info("socket")
        self._timeout = timeout
        self._floor = min_rate * timeout  # bytes a window must see taken, or all there was to take
        self._tick = min(1.0, timeout / 4)
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._sending: anyio.CancelScope | None = None  # the piece in flight
        self._queued = 0  # body bytes handed to the server's send so far
        self._waited = 0.0  # seconds spent in sends that have returned
        self._since = 0.0  # when the send in flight began
        self._window_waited = 0.0  # the waiting time and the bytes taken when the current window began
        self._window_taken = 0
        self.stalled = False

    async def send(self, send: Send, message: Message) -> bool:
        """Send one piece of the body while the client keeps taking it; whether it stalled (the piece given up)."""
        if self.stalled:
            return True
        if self._timer is None:  # the first piece: the first window starts now
            self._window_taken = self._taken()
            self._timer = self._loop.call_later(self._tick, self._check)
        # counted before the send: the server's send writes to the transport before it first waits
        self._queued += len(message.get("body", b""))
        with anyio.CancelScope() as self._sending:
            self._since = self._loop.time()
            try:
                await send(message)
            finally:
                self._waited += self._loop.time() - self._since
                self._sending = None
        return self.stalled

    def close(self) -> None:
        """The response has ended: no more checks."""
        if self._timer is not None:
            self._timer.cancel()

    def _taken(self) -> int:
        """Bytes the client has taken so far, give or take a constant (the status line and headers, chunk framing):
        only differences between two readings are used."""
        return self._queued - unsent(self._transport, self._sock)

    def _check(self) -> None:
        """Every ``tick``: once a window of ``timeout`` seconds spent waiting on the client is over, and the client is
        being waited on now, judge what it took in that window."""
        self._timer = None
        waiting = self._sending is not None
        waited = self._waited + (self._loop.time() - self._since if waiting else 0.0)
        if waiting and waited - self._window_waited >= self._timeout:
            taken = self._taken()
            could = self._queued - self._window_taken  # all it could have taken since the window began
            if taken - self._window_taken < max(1, min(self._floor, could)):
                self.stalled = True
                assert self._sending is not None
                self._sending.cancel()
                return
            self._window_waited, self._window_taken = waited, taken
        self._timer = self._loop.call_later(self._tick, self._check)


def unsent(transport: asyncio.Transport, sock: socket.socket | None) -> int:
    """Bytes of this response not yet taken by the client: the transport's buffer plus what the kernel holds for
    the socket and the client has not acknowledged (SIOCOUTQ). The kernel's share matters: its send buffer can hold
    far more than a slow client reads in a timeout, and the transport's buffer moves only when it has room."""
    left = transport.get_write_buffer_size()
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            left += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    return left


def reset_connection(transport: asyncio.Transport) -> None:
    """Drop the connection now with a reset, not a FIN queued behind what the kernel still holds for a client that
    reads nothing: the lingering is set to zero first, so the kernel's buffer goes too and the client learns at
    once."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
