"""A client that closes the connection half-way through its request body costs the server one log line, no traceback.

Found by probing `modelarc serve` (finding 9): ``starlette.requests.ClientDisconnect`` escaped the routes that read a
body, and uvicorn logged "Exception in ASGI application" with about 70 lines of traceback per aborted request, for
anonymous callers too, so anyone could flood the log. A real ``modelarc serve`` process, its stderr read afterwards.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from liveserver import free_port

from modelarc.archive.repository import Archive
from modelarc.archive.tokens import create_token

READY_TIMEOUT = 60.0


@pytest.fixture
def served(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[str, str, Path]]:
    """``modelarc serve`` in a process of its own; yields its URL, a push token and the file its stderr goes to."""
    env = {**os.environ, "MODELARC_HOME": str(tmp_path / "home"), "MODELARC_DATABASE_URL": sqlite_url}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODELARC_DATABASE_URL", sqlite_url)
        archive, _ = Archive.init(tmp_path / "home")
    token = create_token(archive, "push", "pusher").token
    archive.close()
    port = free_port()
    stderr_path = tmp_path / "serve.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelarc.cli.main", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while True:
                assert proc.poll() is None, stderr_path.read_text()
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "server not ready in time"
                time.sleep(0.1)
            yield url, token, stderr_path
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def _abort_mid_body(url: str, head: bytes, sent: bytes) -> None:
    """Send the head and part of the body it declares, then close the connection."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + sent)
        time.sleep(0.2)  # let the server start reading the body before the connection goes


def test_aborted_bodies_leave_no_traceback_in_the_log(served: tuple[str, str, Path]) -> None:
    url, token, stderr_path = served
    anonymous = (
        b"POST /v1/objects/missing HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n"
    )
    upload = (
        b"PUT /v1/objects/" + b"a" * 64 + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
        + b"\r\nContent-Length: 5000\r\n\r\n"
    )  # fmt: skip
    commit = (
        b"POST /v1/transfer/commit HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 900\r\n\r\n"
    )  # fmt: skip
    for head, sent in [
        (anonymous, b'{"ids":['),
        (anonymous, b"{"),
        (upload, b"MAOB"),
        (commit, b'{"format"'),
    ]:
        _abort_mid_body(url, head, sent)
    # the server still answers, and has finished with the aborted requests by the time it does
    assert httpx.post(f"{url}/v1/objects/missing", json={"ids": []}).json() == {"missing": []}
    time.sleep(0.5)
    log = stderr_path.read_text(errors="replace")
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log
    assert "ClientDisconnect" not in log, log
    assert len([ln for ln in log.splitlines() if "disconnected" in ln]) <= 4, log
