"""Requests an anonymous attacker can send: each is refused cheaply with a bounded 4xx, never a 500 or an echo.

Every test drives a real uvicorn server on 127.0.0.1 (tests/liveserver.py) with httpx, or with a raw socket where
the point is what the server does before the request is complete (an oversized body it must not wait for).
SQLite and PostgreSQL: the search bounds exist because the catalog's integers are 64-bit on both.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from liveserver import serve
from modelfactory import write_model

from modelarc.api.problems import MAX_DETAIL, MAX_ECHO, clip, problem
from modelarc.archive.repository import Archive

HUGE = "9" * 5000  # more digits than Python converts to an int (4300): int() raises, it must never be tried
MAX_INT = 2**63 - 1


@pytest.fixture(scope="module")
def site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One snapshot (acme/base:v1) served anonymously, and its weights file's bytes for range checks.

    Module-scoped (no test here changes the archive): one archive and one server per catalog backend.
    """
    base = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(base / "home")
        source = write_model(base / "src")
        archive.push(source, "acme/base:v1")
        with serve(archive) as url:
            yield {"url": url, "archive": archive, "weights": (source / "model.safetensors").read_bytes()}
        archive.close()


def is_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def raw_exchange(url: str, head: bytes, body_parts: Iterator[bytes], timeout: float = 20) -> bytes:
    """Send a request head and some body over a plain socket and return whatever the server answers first.

    The body may be incomplete: a server that waits for all of it never answers, and this raises TimeoutError.
    """
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        try:
            for part in body_parts:
                sock.sendall(part)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending: what we want to see
        answer = b""
        while b"\r\n\r\n" not in answer:
            block = sock.recv(65536)
            if not block:
                break
            answer += block
        return answer


# --------------------------------------------------------------------------------------- error bodies


def test_an_error_detail_is_bounded_whatever_produced_it() -> None:
    """The last guard behind every handler: even a message that quotes a whole input is cut to MAX_DETAIL."""
    assert clip("x" * 1000, 4) == "'xx… (1002 characters)"
    assert len(clip("x" * 1_000_000)) <= MAX_ECHO + 30  # the quote and a note of the length
    answer = problem(400, "UsageError", "y" * 1_000_000)
    assert len(answer.body) < MAX_DETAIL + 200 and b"(1000000 characters)" in answer.body
