"""The Host header is the one piece of a request this server copies into URLs it hands out (the ``Link`` of a page,
the 307 of a trailing slash): one that is not a host name or address is refused before anything reads it, and with
a public URL (``serve --public-url``) none is copied at all. Sent as raw bytes over a socket to a real server, since
an HTTP client would not send most of these."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from liveserver import serve, serve_app
from modelfactory import tiny_tensors, write_model

from modelarc.api.app import create_app
from modelarc.api.public_url import PublicUrl
from modelarc.archive.repository import Archive
from modelarc.errors import UsageError

PUBLIC = "https://models.example.org"

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
        yield {"host": parts.hostname, "port": parts.port, "archive": archive}
    archive.close()


@pytest.fixture(scope="module")
def public_site(site) -> Iterator[dict[str, Any]]:
    """The same archive served with ``public_url``, as ``serve --public-url`` does."""
    archive = site["archive"]
    with serve_app(create_app(lambda: archive, public_url=PublicUrl.parse(PUBLIC + "/"))) as url:
        parts = urlsplit(url)
        yield {"host": parts.hostname, "port": parts.port}


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


@pytest.mark.parametrize(
    "host_lines",
    [("Host: evil.example",), ("Host: archive.example.org:8443",), ("Host: [::1]:8080",), ()],
    ids=["other-name", "name-and-port", "ipv6", "http-1.0-none"],
)
@pytest.mark.parametrize("path", ["/v1/models?limit=1", "/api/models?limit=1"], ids=["v1", "hub"])
def test_with_a_public_url_the_next_page_names_it_whatever_the_host(public_site, host_lines, path: str) -> None:
    version = "HTTP/1.1" if host_lines else "HTTP/1.0"
    request = "\r\n".join([f"GET {path} {version}", *host_lines, "Connection: close", "", ""])
    status, headers, _ = _exchange(public_site, request.encode("latin-1"))
    assert status == 200, (status, headers)
    link = headers["link"]
    assert link.startswith(f"<{PUBLIC}{path.split('?')[0]}?") and link.endswith('; rel="next"'), link


@pytest.mark.parametrize("host", ["evil.example", "archive.example.org:8443"])
def test_with_a_public_url_the_trailing_slash_redirect_names_it(public_site, host: str) -> None:
    status, headers, _ = _get(public_site, "/v1/models/?limit=1", f"Host: {host}")
    assert status == 307 and headers["location"] == f"{PUBLIC}/v1/models?limit=1", (status, headers)


def test_with_a_public_url_a_malformed_host_is_still_refused(public_site) -> None:
    status, headers, body = _get(public_site, "/v1/models?limit=1", f"Host: {HOSTILE[0]}")
    assert status == 400 and "link" not in headers and b"Host header" in body


@pytest.mark.parametrize(
    "text, shown, server",
    [
        ("https://models.example.org", "https://models.example.org", ("models.example.org", 443)),
        (" https://Models.Example.org:443/ ", "https://models.example.org", ("models.example.org", 443)),
        ("HTTP://archive.lan:8470", "http://archive.lan:8470", ("archive.lan", 8470)),
        ("http://10.0.0.7:80", "http://10.0.0.7", ("10.0.0.7", 80)),
        ("http://[::1]:8470/", "http://[::1]:8470", ("::1", 8470)),
        ("https://[2001:DB8::1]", "https://[2001:db8::1]", ("2001:db8::1", 443)),
    ],
)
def test_a_public_url_is_scheme_host_and_port(text: str, shown: str, server: tuple[str, int]) -> None:
    public = PublicUrl.parse(text)
    assert str(public) == shown
    scope: dict[str, Any] = {"headers": [(b"host", b"evil.example"), (b"accept", b"*/*")], "scheme": "http"}
    public.apply(scope)
    assert scope["server"] == server and scope["scheme"] == shown.split(":")[0]
    assert scope["headers"] == [(b"accept", b"*/*"), (b"host", shown.split("://")[1].encode())]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "models.example.org",
        "ftp://models.example.org",
        "https://models.example.org/modelarc",
        "https://models.example.org/?next=1",
        "https://models.example.org#top",
        "https://user:pw@models.example.org",
        "https://models.example.org:0",
        "https://models.example.org:65536",
        "https://models.example.org:http",
        "https://bad host.example",
        "https://exämple.org",
        "https://models.example.org\x1b[31m",
        "http://[::1",
        "https://",
    ],
)
def test_anything_else_is_not_a_public_url(text: str) -> None:
    with pytest.raises(UsageError, match=r"^give the URL clients reach this server at as http\(s\)://HOST\[:PORT\]"):
        PublicUrl.parse(text)
