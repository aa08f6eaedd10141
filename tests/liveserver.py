"""A real uvicorn server on 127.0.0.1 (port picked by the OS) serving an archive, for tests that need real clients."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest
import uvicorn

from modelarc.api.app import create_app
from modelarc.archive.repository import Archive
from modelarc.cli.http_protocol import ServeHTTPProtocol

STARTUP_TIMEOUT = 30.0  # seconds; a loaded CI machine starts uvicorn in well under one
READY_TIMEOUT = 60.0  # seconds, for `modelarc serve` as a process of its own (imports, archive, workers)


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


class _QuickStopServer(uvicorn.Server):
    """uvicorn's main loop looks at ``should_exit`` every 0.1 s: a test stopping hundreds of servers waited ~50 ms
    for each. This one looks every 10 ms; its ``on_tick`` (the Date header, the request limit) still runs every
    0.1 s, as uvicorn's does."""

    async def main_loop(self) -> None:
        import asyncio

        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            for _ in range(10):
                await asyncio.sleep(0.01)
                if self.should_exit:
                    break
            counter = (counter + 1) % 864000
            should_exit = await self.on_tick(counter)


@contextmanager
def serve_app(app: Any, *, port: int | None = None, startup_timeout: float = STARTUP_TIMEOUT) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 in a thread; raise ``ServerStartError`` (the thread stopped) if it does not
    answer within ``startup_timeout`` seconds or exits first (a port in use, a failing startup)."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    # the protocol `modelarc serve` runs (cli/http_protocol.py): without it every small answer waits 40 ms for an ACK
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", http=ServeHTTPProtocol)
    server = _QuickStopServer(config)
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
                # any answer will do; /healthz is the cheapest (the first /openapi.json builds the whole schema).
                # Plain http on 127.0.0.1: verify=False spares loading the CA bundle each time (~50 ms a server)
                httpx.get(f"{url}/healthz", timeout=2, verify=False)
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


class ServedProcess(NamedTuple):
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def serve_process(home: Path, env: dict[str, str], *args: str) -> Iterator[ServedProcess]:
    """``modelarc serve`` as its own process (as a user starts it); yields its URL and process once /readyz says
    ready, and stops it when the block ends."""
    port = free_port()
    log_path = home.parent / f"{home.name}-serve.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelarc.cli.main", "serve", "--port", str(port), *args],
        env={**env, "MODELARC_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready in time"
            time.sleep(0.1)
        yield ServedProcess(url, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
