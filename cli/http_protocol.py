"""uvicorn's HTTP protocol as ``modelarc serve`` runs it: Nagle's algorithm off on every connection, and a deadline
for each request's head.

Why no Nagle: asyncio turns Nagle off only for a socket whose ``proto`` is ``IPPROTO_TCP``
(``base_events._set_nodelay``), and neither the socket ``serve`` binds (``socket(family, SOCK_STREAM)``, proto 0)
nor the one uvicorn rebuilds for ``--workers`` (``socket.fromfd(fd, AF_UNIX, ...)``) says so. uvicorn writes a
response's head and its body in separate sends; with Nagle on, a body that follows an unacknowledged head waits for
the client's delayed ACK: 40 ms on Linux. Measured on 127.0.0.1 (2026-12-01, a kept-alive connection): a 69-byte
object took 48 ms per GET (curl and http.client alike; 4-6 ms with this) and a batch of eight small objects 48-52 ms
(9-12 ms); a pull asks for its manifest, bundles and batches this way (bench/README.md "Nagle's algorithm on the
server's connections").

Why a deadline for request heads: uvicorn gives none. A connection that sent nothing, or sent a request's head a
byte at a time, stayed open for as long as the client liked (tried on 2026-12-02: both still open after 40 s, and
without end), and so did one whose body the server had answered without reading (401 to an anonymous upload, 503
when the memory for bodies is spent, 404): uvicorn reads and drops the rest of such a body so that the connection
can carry a next request, and every byte that arrives cancels its keep-alive timer. Each held a file descriptor and
a task, with no credentials needed. Now a connection is closed ``MODELARC_RECEIVE_TIMEOUT`` seconds after it was
opened, or after its last answer, unless the head of a next request has arrived by then; an idle kept-alive one
still ends at uvicorn's keep-alive timeout (5 s) where that comes first. The rest of a body answered unread must so
arrive within one timeout of the answer, whatever its speed. It is not cut at once (nor the answer sent with
``Connection: close``): closing a socket with unread bytes resets it, and a client still sending, as most do before
they read, could lose the answer (the 503 and its Retry-After) to the reset; it has the whole timeout to finish, and
on Linux the answer stays readable after the reset. An answer still going out when the deadline comes (a large one,
to a slow reader) is not cut: the deadline moves on while the client takes the send floor
(``MODELARC_SEND_MIN_RATE``) over each window, as a download must; one that takes less is reset.

Kept out of cli/commands/serve.py because importing uvicorn costs about a quarter of a second (``modelarc --help``
imports every command module).
"""

from __future__ import annotations

import asyncio
import functools
import socket
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from modelarc.api.send_watch import reset_connection
from modelarc.config import receive_timeout, send_min_rate


class ServeHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """The protocol uvicorn's ``http="auto"`` picks (httptools where it is installed, h11 otherwise), with
    TCP_NODELAY set on its connection's socket and a deadline for each request's head (the module's doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._unsent = 0  # bytes of the last answer not yet taken by the kernel when the deadline was set

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        set_nodelay(transport)
        super().connection_made(transport)
        self._await_next_head(None)

    def on_response_complete(self) -> None:
        # the newest request: httptools may hold a pipelined one here, whose answer is not done
        cycle = self.cycle
        super().on_response_complete()
        if cycle is not None and cycle.response_complete and self.cycle is cycle:
            self._await_next_head(cycle)

    def _await_next_head(self, answered: object) -> None:
        """Close the connection unless the head of a request after ``answered`` (None: the first) arrives within the
        deadline. Both uvicorn protocols make a new ``cycle`` as soon as a request's head is parsed. Armed on a
        closing connection too: uvicorn's graceful close waits for ever on a client that takes nothing."""
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._unsent = self.transport.get_write_buffer_size()
        self._head_deadline = self.loop.call_later(_limits()[0], self._no_head_in_time, answered)

    def _no_head_in_time(self, answered: object) -> None:
        self._head_deadline = None
        # a connection upgraded to another protocol is no longer this one's to close
        if self.cycle is not answered or self.transport.get_protocol() is not self:
            return
        window, floor = _limits()
        unsent = self.transport.get_write_buffer_size()
        if unsent:
            # the answer is still going out (a large one, to a slow reader): wait on while the client takes what a
            # download must (the send floor over the window, or all that was left), as api/app.py asks of bodies
            # being sent; one that takes less is reset, its unsent bytes dropped
            if self._unsent - unsent >= max(1, min(int(floor * window), self._unsent)):
                self._unsent = unsent
                self._head_deadline = self.loop.call_later(window, self._no_head_in_time, answered)
            else:
                reset_connection(self.transport)
        elif not self.transport.is_closing():
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        super().connection_lost(exc)


@functools.cache
def _limits() -> tuple[float, int]:
    """(MODELARC_RECEIVE_TIMEOUT, MODELARC_SEND_MIN_RATE), read once per server process: its environment is fixed
    once it runs and was checked at its start (load_settings)."""
    return receive_timeout(), send_min_rate()


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Send each write at once. A Unix socket or a transport without one is left as it is (nothing to turn off)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not TCP (EOPNOTSUPP on a Unix socket, say): Nagle does not apply
        pass
