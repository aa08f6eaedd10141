"""A real uvicorn server on 127.0.0.1 (port picked by the OS) serving an archive, for tests that need real clients."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from modelarc.api.app import create_app
from modelarc.archive.repository import Archive

STARTUP_TIMEOUT = 30.0  # seconds; a loaded CI machine starts uvicorn in well under one


class ServerStartError(RuntimeError):
    """The test server did not come up; raised instead of letting the test run against nothing."""


@contextmanager
def serve(archive: Archive, *, anonymous_read: bool = True) -> Iterator[str]:
    """Yield the base URL while the server runs; it stops when the block ends."""
    with serve_app(create_app(lambda: archive, anonymous_read=anonymous_read)) as url:
        yield url


@contextmanager
def served_base_model(database_url: str, base: Path) -> Iterator[tuple[Archive, str]]:
    """A new archive under ``base`` on the catalog at ``database_url``, holding a small model as acme/base:v1, and
    the URL of a server for it: what a module of request tests shares."""
    from modelfactory import write_model

    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELARC_DATABASE_URL", database_url)
        archive, _ = Archive.init(base / "home")
    try:
        archive.push(write_model(base / "src"), "acme/base:v1")
        with serve(archive) as url:
            yield archive, url
    finally:
        archive.close()


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port free on 127.0.0.1 now, for a server that binds it a moment later.

    Chosen below the kernel's ephemeral range: a port the OS handed out for port 0 is one it also hands out as the
    local port of outgoing connections (the tests' own clients, PostgreSQL's), and one of those took it between this
    check and the server's bind often enough to fail a test on a busy machine ("address already in use")."""
    top = _ephemeral_start()
    for _ in range(200):
        port = random.randrange(20000, top) if top > 20100 else 0
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port below the ephemeral range")


@contextmanager
def serve_app(app: Any, *, port: int | None = None, startup_timeout: float = STARTUP_TIMEOUT) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 in a thread; raise ``ServerStartError`` (the thread stopped) if it does not
    answer within ``startup_timeout`` seconds or exits first (a port in use, a failing startup)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    ended: list[BaseException] = []

    def run() -> None:
        try:
            server.run()
        except BaseException as exc:  # uvicorn logs why and sys.exit()s when it cannot start
            ended.append(exc)

    thread = threading.Thread(target=run, name=f"liveserver:{port}", daemon=True)
    thread.start()
    try:
        _wait_until_serving(server, thread, url, startup_timeout, ended)
    except ServerStartError:
        _stop(server, thread)
        raise
    try:
        yield url
    finally:
        _stop(server, thread)


def _wait_until_serving(
    server: uvicorn.Server, thread: threading.Thread, url: str, timeout: float, ended: list[BaseException]
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if not thread.is_alive():
            why = f" ({type(ended[0]).__name__}: {ended[0]})" if ended else ""
            raise ServerStartError(f"the test server for {url} exited before it served{why}; see its log above")
        if server.started:
            try:
                # any answer will do; /healthz is the cheapest (the first /openapi.json builds the whole schema)
                httpx.get(f"{url}/healthz", timeout=2)
                return
            except httpx.TransportError:
                pass
        if time.monotonic() > deadline:
            raise ServerStartError(f"the test server for {url} did not answer within {timeout:g} s")
        time.sleep(0.02)


def _stop(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(timeout=10)
    if thread.is_alive():
        server.force_exit = True
        thread.join(timeout=10)
