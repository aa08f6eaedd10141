"""A real uvicorn server on 127.0.0.1 (port picked by the OS) serving an archive, for tests that need real clients."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from modelarc.api.app import create_app
from modelarc.archive.repository import Archive


@contextmanager
def serve(archive: Archive, *, anonymous_read: bool = True) -> Iterator[str]:
    """Yield the base URL while the server runs; it stops when the block ends."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        create_app(lambda: archive, anonymous_read=anonymous_read),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/openapi.json", timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
