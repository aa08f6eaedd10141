"""uvicorn's HTTP protocol as ``modelarc serve`` runs it: Nagle's algorithm off on every connection, and a deadline
for the rest of a request body the server answered without reading.

Why no Nagle: asyncio turns Nagle off only for a socket whose ``proto`` is ``IPPROTO_TCP``
(``base_events._set_nodelay``), and neither the socket ``serve`` binds (``socket(family, SOCK_STREAM)``, proto 0)
nor the one uvicorn rebuilds for ``--workers`` (``socket.fromfd(fd, AF_UNIX, ...)``) says so. uvicorn writes a
response's head and its body in separate sends; with Nagle on, a body that follows an unacknowledged head waits for
the client's delayed ACK: 40 ms on Linux. Measured on 127.0.0.1 (2026-12-01, a kept-alive connection): a 69-byte
object took 48 ms per GET (curl and http.client alike; 4-6 ms with this) and a batch of eight small objects 48-52 ms
(9-12 ms); a pull asks for its manifest, bundles and batches this way (bench/README.md "Nagle's algorithm on the
server's connections").

Why a deadline for unread bodies: a route may answer before it reads the body (401 to an anonymous upload, 503 when
the memory for bodies is spent, 413, 404). uvicorn then reads and drops the rest of the declared body so that the
connection can serve a next request, and every byte that arrives cancels its keep-alive timer: a client declaring
a terabyte and sending a byte a second held a connection (a file descriptor, a task) for as long as it liked, with
no credentials needed. Now such a connection is closed ``MODELARC_RECEIVE_TIMEOUT`` seconds after its answer unless
a next request has begun on it: a client that sends its body on at any usable speed finishes it and keeps the
connection; one that cannot has had the answer for that long. The connection is not closed at once (nor given
``Connection: close``): closing a socket with unread bytes resets it, and a client still sending, as most do
before they read, could then lose the answer (the 503 and its Retry-After) to the reset.

Kept out of cli/commands/serve.py because importing uvicorn costs about a quarter of a second (``modelarc --help``
imports every command module).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from modelarc.config import receive_timeout


class ServeHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """The protocol uvicorn's ``http="auto"`` picks (httptools where it is installed, h11 otherwise), with
    TCP_NODELAY set on its connection's socket and unread request bodies given a deadline (the module's doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # read per connection, not per request: the environment is fixed once the server runs, and validated at its
        # start (load_settings), so this never raises here
        self._linger_seconds = receive_timeout()
        self._linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        set_nodelay(transport)
        super().connection_made(transport)

    def on_response_complete(self) -> None:
        # the newest request: httptools may hold a pipelined one here, whose answer is not done
        cycle = self.cycle
        super().on_response_complete()
        # more_body: the body was still coming when the answer was done (both protocols set it False only when the
        # whole body arrived before the answer)
        answered_unread = cycle is not None and cycle.response_complete and cycle.more_body
        if answered_unread and not self.transport.is_closing():
            if self._linger is not None:
                self._linger.cancel()
            self._linger = self.loop.call_later(self._linger_seconds, self._end_linger, cycle)

    def _end_linger(self, cycle: object) -> None:
        """Close the connection unless a next request began on it since ``cycle`` was answered."""
        self._linger = None
        if self.cycle is not cycle or self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # a client that reads nothing would hold a graceful close open
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        super().connection_lost(exc)


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Send each write at once. A Unix socket or a transport without one is left as it is (nothing to turn off)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not TCP (EOPNOTSUPP on a Unix socket, say): Nagle does not apply
        pass
