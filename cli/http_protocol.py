"""uvicorn's HTTP protocol with Nagle's algorithm turned off on every connection ``modelarc serve`` accepts.

Why: asyncio turns Nagle off only for a socket whose ``proto`` is ``IPPROTO_TCP`` (``base_events._set_nodelay``),
and neither the socket ``serve`` binds (``socket(family, SOCK_STREAM)``, proto 0) nor the one uvicorn rebuilds for
``--workers`` (``socket.fromfd(fd, AF_UNIX, ...)``) says so. uvicorn writes a response's head and its body in
separate sends; with Nagle on, a body that follows an unacknowledged head waits for the client's delayed ACK:
40 ms on Linux. Measured on 127.0.0.1 (2026-12-01, a kept-alive connection): a 69-byte object took 48 ms per GET
(curl and http.client alike; 4-6 ms with this) and a batch of eight small objects 48-52 ms (9-12 ms); a pull asks
for its manifest, bundles and batches this way (bench/README.md "Nagle's algorithm on the server's connections"). Kept out of cli/commands/serve.py because
importing uvicorn costs about a quarter of a second (``modelarc --help`` imports every command module).
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """The protocol uvicorn's ``http="auto"`` picks (httptools where it is installed, h11 otherwise, as before),
    setting TCP_NODELAY on its connection's socket before serving it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        set_nodelay(transport)
        super().connection_made(transport)


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Send each write at once. A Unix socket or a transport without one is left as it is (nothing to turn off)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not TCP (EOPNOTSUPP on a Unix socket, say): Nagle does not apply
        pass
