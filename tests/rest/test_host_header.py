"""The Host header is the one piece of a request this server copies into URLs it hands out (the ``Link`` of a page,
the 307 of a trailing slash): one that is not a host name or address is refused before anything reads it. Sent as
raw bytes over a socket to a real server, since an HTTP client would not send most of these."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from liveserver import serve
from modelfactory import tiny_tensors, write_model

from modelarc.archive.repository import Archive

HOSTILE = [
    'evil.example>; rel="next", <http://evil.example/steal',  # ends the URL in the Link header, adds a target
    "archive.example/../../x",
    "archive example",
    "user@evil.example",
    "",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base: Path = tmp_path_factory.mktemp("host")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MODELARC_DATABASE_URL", raising=False)
        archive, _ = Archive.init(base / "home")
    archive.push(write_model(base / "a"), "acme/a:v1")
    archive.push(write_model(base / "b", tiny_tensors(seed=1)), "acme/b:v1")  # two models: /v1/models pages
    with serve(archive) as url:
        parts = urlsplit(url)
        yield {"host": parts.hostname, "port": parts.port}
    archive.close()


def _exchange(site: dict[str, Any], request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request as raw bytes (the server closes after it); the status, headers (lower-case names) and body."""
    with socket.create_connection((site["host"], site["port"]), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def _get(site: dict[str, Any], path: str, *host_lines: str) -> tuple[int, dict[str, str], bytes]:
    lines = [f"GET {path} HTTP/1.1", *host_lines, "Connection: close", "", ""]
    return _exchange(site, "\r\n".join(lines).encode("latin-1"))


@pytest.mark.parametrize("host", HOSTILE, ids=["link-injection", "path", "space", "userinfo", "empty"])
@pytest.mark.parametrize("path", ["/v1/models?limit=1", "/v1/models/"], ids=["page", "trailing-slash"])
def test_a_host_header_that_names_no_host_is_refused_before_any_url_is_made_of_it(site, host: str, path: str) -> None:
    status, headers, body = _get(site, path, f"Host: {host}")
    assert status == 400, (status, headers)
    assert "link" not in headers and "location" not in headers
    assert b"Host header" in body and b"evil" not in body  # says what is wrong, echoes nothing of it


def test_two_host_headers_are_refused(site) -> None:
    """(uvicorn's h11 refuses them itself; the app's check is for a server that would not.)"""
    status, headers, _ = _get(site, "/v1/models?limit=1", "Host: archive.example", "Host: evil.example")
    assert status == 400 and "link" not in headers, (status, headers)


@pytest.mark.parametrize("host", ["archive.example.org:8443", "[::1]:8080", "localhost"])
def test_a_host_name_or_address_is_what_the_next_page_link_names(site, host: str) -> None:
    status, headers, _ = _get(site, "/v1/models?limit=1", f"Host: {host}")
    assert status == 200
    assert headers["link"].startswith(f"<http://{host}/v1/models?") and headers["link"].endswith('; rel="next"')


def test_an_http_1_0_request_without_a_host_is_answered(site) -> None:
    status, headers, _ = _exchange(site, b"GET /v1/models?limit=1 HTTP/1.0\r\n\r\n")
    assert status == 200 and headers["link"].startswith(f"<http://{site['host']}:{site['port']}/v1/models?")


def test_the_check_itself_refuses_two_host_headers() -> None:
    """For a server that passes both on (uvicorn's h11 refuses them before the app, above)."""
    from starlette.requests import Request

    from modelarc.api.limits import host_problem

    def request(*hosts: bytes) -> Request:
        return Request({"type": "http", "headers": [(b"host", h) for h in hosts], "path": "/", "query_string": b""})

    assert host_problem(request(b"archive.example", b"evil.example")) == "the request has more than one Host header"
    assert host_problem(request(b"archive.example:80")) is None
    assert host_problem(request()) is None
