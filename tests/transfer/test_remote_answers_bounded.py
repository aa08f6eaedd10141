"""Every answer the client reads from a remote is bounded: in size (counted as decoded, so a gzip bomb is stopped as
it inflates), in pages (a listing that pages on forever is stopped), in time (a remote that trickles or stalls ends
the command), and in shape (a malformed answer is a one-line error, never a traceback)."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hostilekit import RewritingProxy, serve_proxy
from modelfactory import write_model
from transferkit import Home, Server, copy_into, make_home, trusted_by_server

from modelarc.archive.remote.offers import MAX_OFFER_BYTES


def _answer(route: str, status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    """A rewrite that answers ``body`` to every request whose path (without its query) ends with ``route``."""

    def rewrite(method: str, path: str, st: int, hd: dict[str, str], content: bytes) -> Any:
        if path.split("?")[0].endswith(route):
            return status, {"content-type": "application/json", **(headers or {})}, body
        return st, hd, content

    return rewrite


# One server per module and backend (``module_server``): the tests read it, and what they change there - the
# acme/m:v2 a push commits before its answer is rewritten, objects uploaded - no other test here observes (each
# request path a test's proxy rewrites is asked whatever the server holds). Each test has its own alice, a copy:
# tests add remotes named evil, a mirror and local snapshots to her.
@pytest.fixture(scope="module")
def pushed(module_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding alice/, a pusher the server trusts who has pushed acme/m:v1 to it, and m1/, that model."""
    made = tmp_path_factory.mktemp("pushed")
    home = make_home(made, "alice")
    trusted_by_server(module_server, home)
    home("remote", "add", "origin", module_server.url, "--token", module_server.push_token)
    home("push", write_model(made / "m1"), "acme/m:v1", "--remote", "origin")
    return made


@pytest.fixture
def alice(pushed: Path, tmp_path: Path) -> Home:
    """A pusher the server trusts, who has pushed acme/m:v1 to it: this test's own copy of ``pushed``."""
    copy_into(pushed, tmp_path)
    return Home(tmp_path / "alice", CliRunner())


# ------------------------------------------------------------------ size
def test_remote_add_refuses_a_gzip_bomb_as_it_inflates(module_server: Server, tmp_path: Path) -> None:
    bomb = gzip.compress(b"[" + b" " * (64 << 20) + b"]")  # 64 KiB on the wire, 64 MiB decoded
    proxy = RewritingProxy(
        module_server.url, rewrite=_answer("/v1/transfer/keys", 200, bomb, {"Content-Encoding": "gzip"})
    )
    bob = make_home(tmp_path, "bob")
    with serve_proxy(proxy) as url:
        result = bob("remote", "add", "evil", url, ok=False)
    assert "its answer to GET /v1/transfer/keys is larger than" in result.stderr


def test_ls_remote_refuses_a_page_larger_than_its_cap(
    module_server: Server, tmp_path: Path, alice: Home
) -> None:
    page = json.dumps([{"x": "y" * 1000}] * (40 << 10)).encode()  # 40 MiB
    proxy = RewritingProxy(module_server.url, rewrite=_answer("/v1/snapshots", 200, page))
    with serve_proxy(proxy) as url:
        alice("remote", "add", "evil", url, "--no-trust-keys")
        result = alice("ls", "--remote", "evil", ok=False)
    assert "is larger than" in result.stderr


def test_pull_refuses_an_offer_larger_than_max_offer_bytes(
    module_server: Server, tmp_path: Path, alice: Home
) -> None:
    offer = b'{"pad": "' + b"x" * (MAX_OFFER_BYTES + 10) + b'"}'
    proxy = RewritingProxy(module_server.url, rewrite=_answer("/v1/transfer/snapshots/acme/m/v1", 200, offer))
    bob = make_home(tmp_path, "bob")
    with serve_proxy(proxy) as url:
        bob("remote", "add", "evil", url)
        result = bob("pull", "acme/m:v1", "--remote", "evil", ok=False)
    assert f"its snapshot offer is larger than {MAX_OFFER_BYTES} bytes" in result.stderr


def test_push_refuses_an_oversized_check_answer(module_server: Server, tmp_path: Path, alice: Home) -> None:
    body = json.dumps({"missing": [], "pad": "x" * (4 * MAX_OFFER_BYTES)}).encode()
    proxy = RewritingProxy(module_server.url, rewrite=_answer("/v1/transfer/check", 200, body))
    alice("push", write_model(tmp_path / "m2", metadata={"v": "2"}), "acme/m:v2")
    with serve_proxy(proxy) as url:
        alice("remote", "add", "evil", url, "--token", module_server.push_token, "--no-trust-keys")
        result = alice("push", "acme/m:v2", "--remote", "evil", ok=False)
    assert "its answer to POST /v1/transfer/check is larger than" in result.stderr


# ------------------------------------------------------------------ pages
def _endless(kind: str) -> Any:
    def rewrite(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> Any:
        if not path.split("?")[0].endswith("/v1/snapshots"):
            return status, headers, body
        page = b"[]" if kind == "empty" else body
        return (
            200,
            {"content-type": "application/json", "link": '</v1/snapshots?cursor=abc&limit=5>; rel="next"'},
            page,
        )

    return rewrite


@pytest.mark.parametrize(("kind", "said"), [("empty", "empty page"), ("loop", "a page already read")])
def test_ls_remote_stops_an_endless_listing(
    module_server: Server, tmp_path: Path, alice: Home, kind: str, said: str
) -> None:
    # every page is the first one again, its next link back to the same cursor
    first_page = lambda path: "/v1/snapshots" if path.startswith("/v1/snapshots") else path  # noqa: E731
    proxy = RewritingProxy(module_server.url, route=first_page, rewrite=_endless(kind))
    with serve_proxy(proxy) as url:
        alice("remote", "add", "evil", url, "--no-trust-keys")
        result = alice("ls", "--remote", "evil", ok=False)
    assert said in result.stderr
    assert len(proxy.requests) < 10


def test_mirror_sync_stops_an_endless_listing(module_server: Server, tmp_path: Path, alice: Home) -> None:
    proxy = RewritingProxy(module_server.url, rewrite=_endless("empty"))
    with serve_proxy(proxy) as url:
        alice("remote", "add", "evil", url, "--token", module_server.push_token, "--no-trust-keys")
        alice("mirror", "add", "m", "remote:evil")
        result = alice("mirror", "sync", ok=False)
    assert "empty page" in result.stderr


def _more_rows(count: int) -> Any:
    """A rewrite whose every page of ``GET /v1/snapshots`` holds ``count`` copies of the server's first row."""

    def rewrite(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> Any:
        if not path.split("?")[0].endswith("/v1/snapshots"):
            return status, headers, body
        rows = json.loads(body)
        return 200, {"content-type": "application/json"}, json.dumps(rows[:1] * count).encode()

    return rewrite


def test_ls_remote_refuses_a_page_with_more_rows_than_asked_for(
    module_server: Server, tmp_path: Path, alice: Home
) -> None:
    proxy = RewritingProxy(module_server.url, rewrite=_more_rows(30))
    with serve_proxy(proxy) as url:
        alice("remote", "add", "evil", url, "--no-trust-keys")
        result = alice("ls", "--remote", "evil", "--limit", "20", ok=False)
    assert "holds more than the 20 rows asked for" in result.stderr


def test_mirror_sync_refuses_a_page_with_more_rows_than_asked_for(
    module_server: Server, tmp_path: Path, alice: Home
) -> None:
    """A mirror's listing is read a page of (at most) 1000 rows at a time, each judged as it arrives."""
    proxy = RewritingProxy(module_server.url, rewrite=_more_rows(1001))
    with serve_proxy(proxy) as url:
        alice("remote", "add", "evil", url, "--token", module_server.push_token, "--no-trust-keys")
        alice("mirror", "add", "m", "remote:evil")
        result = alice("mirror", "sync", ok=False)
    assert "holds more than the 1,000 rows asked for" in result.stderr


# ------------------------------------------------------------------ shapes
@pytest.mark.parametrize("page", [b"null", b"5", b'{"a": 1}', b"[5]", b"[null]", b'[{"model": 5}]'])
def test_ls_remote_refuses_a_malformed_page(
    module_server: Server, tmp_path: Path, alice: Home, page: bytes
) -> None:
    proxy = RewritingProxy(module_server.url, rewrite=_answer("/v1/snapshots", 200, page))
    with serve_proxy(proxy) as url:
        alice("remote", "add", "evil", url, "--no-trust-keys")
        result = alice("ls", "--remote", "evil", ok=False)
    assert "malformed snapshot listing" in result.stderr


@pytest.mark.parametrize(
    ("route", "status", "body"),
    [
        # the first check answers which documents it lacks (409); a push asks /v1/objects/missing only about the
        # delta bases of what it sends (its answers: test_a_malformed_answer_to_which_objects_it_lacks_is_refused)
        ("/v1/transfer/check", 409, b'{"nope": 1}'),
        ("/v1/transfer/check", 409, b'{"missing": 5}'),
        ("/v1/transfer/check", 409, b"[1]"),
        ("/v1/transfer/check", 409, b'{"missing": [5]}'),
        ("/v1/transfer/check", 200, b'{"missing": [5, null]}'),
        ("/v1/transfer/check", 200, b'{"missing": ["nothex"]}'),
        ("/v1/transfer/commit", 409, b'{"missing": [5, null]}'),
        ("/v1/transfer/commit", 409, b'{"missing": "abc"}'),
        ("/v1/transfer/commit", 200, b'{"ref": 5}'),
        ("/v1/transfer/commit", 200, b"[]"),
    ],
)
def test_push_refuses_a_malformed_answer(
    module_server: Server, tmp_path: Path, alice: Home, route: str, status: int, body: bytes
) -> None:
    proxy = RewritingProxy(module_server.url, rewrite=_answer(route, status, body))
    alice("push", write_model(tmp_path / "m2", metadata={"v": "2"}), "acme/m:v2")
    with serve_proxy(proxy) as url:
        alice("remote", "add", "evil", url, "--token", module_server.push_token, "--no-trust-keys")
        result = alice("push", "acme/m:v2", "--remote", "evil", ok=False)
    assert "remote evil" in result.stderr


@pytest.mark.parametrize(
    "body", [b'{"nope": 1}', b'{"missing": 5}', b"[1]", b'{"missing": [5]}', b'{"missing": ["' + b"cd" * 32 + b'"]}']
)
def test_a_malformed_answer_to_which_objects_it_lacks_is_refused(
    module_server: Server, alice: Home, body: bytes
) -> None:
    from modelarc.archive.remote.client import RemoteArchive
    from modelarc.archive.remote.config import get_remote
    from modelarc.errors import RemoteError

    proxy = RewritingProxy(module_server.url, rewrite=_answer("/v1/objects/missing", 200, body))
    with serve_proxy(proxy) as url:
        alice("remote", "add", "evil", url, "--token", module_server.push_token, "--no-trust-keys")
        with RemoteArchive(get_remote(alice.path, "evil")) as client, pytest.raises(RemoteError) as refused:
            client.missing(["ab" * 32])
    assert "remote evil" in str(refused.value)
    if b"cd" in body:  # a well-formed answer naming an object it was not asked about
        assert "which it was not asked about" in str(refused.value)


# ------------------------------------------------------------------ time
@contextmanager
def _trickling(route: str) -> Iterator[str]:
    """A server answering ``route`` with a body of 1 MiB that it sends a byte every 0.2 s; 404 to the rest."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return

        def do_GET(self) -> None:
            if not self.path.split("?")[0].endswith(route):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(1 << 20))
            self.end_headers()
            try:
                while not stop.wait(0.2):
                    self.wfile.write(b" ")
                    self.wfile.flush()
            except OSError:
                pass

    class Quiet(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            return

    server = Quiet(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("route", "command"),
    [
        ("/v1/transfer/snapshots/acme/m/v1", ["pull", "acme/m:v1", "--remote", "slow"]),
        ("/v1/snapshots", ["ls", "--remote", "slow"]),
    ],
)
def test_a_trickling_remote_is_stopped_at_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, route: str, command: list[str]
) -> None:
    bob = make_home(tmp_path, "bob")
    with _trickling(route) as url:
        bob("remote", "add", "slow", url, "--no-trust-keys")
        monkeypatch.setenv("MODELARC_REMOTE_TIMEOUT", "1")
        monkeypatch.setenv("MODELARC_REMOTE_MIN_RATE", "1MiB")
        started = time.monotonic()
        result = bob(*command, ok=False)
    assert time.monotonic() - started < 15
    assert "stalled or too slow" in result.stderr


@contextmanager
def _trickling_headers() -> Iterator[str]:
    """A server answering every request with a status line and then headers it sends a byte every 0.2 s, forever:
    httpx's timeouts are per read, so only an overall deadline ends such a request."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            return

        def _trickle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Pad: ")
                self.wfile.flush()
                while not stop.wait(0.2):
                    self.wfile.write(b"a")
                    self.wfile.flush()
            except OSError:
                pass

        do_GET = do_POST = do_PUT = _trickle

    class Quiet(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            return

    server = Quiet(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "command",
    [
        ["remote", "add", "slow2", "{url}"],
        ["ls", "--remote", "slow"],
        ["push", "{model}", "acme/m:v9", "--remote", "slow"],
        ["mirror", "add", "slowm", "remote:slow"],
    ],
)
def test_a_remote_trickling_its_headers_is_stopped_at_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    bob = make_home(tmp_path, "bob")
    model = write_model(tmp_path / "m")
    with _trickling_headers() as url:
        bob("remote", "add", "slow", url, "--no-trust-keys")
        monkeypatch.setenv("MODELARC_REMOTE_TIMEOUT", "1")
        monkeypatch.setenv("MODELARC_REMOTE_MIN_RATE", "1MiB")
        started = time.monotonic()
        result = bob(*[c.format(url=url, model=model) for c in command], ok=False)
    assert time.monotonic() - started < 10
    assert "stalled or too slow" in result.stderr


def test_remote_timeout_must_be_a_number_of_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "x", "http://127.0.0.1:9", "--no-trust-keys")
    monkeypatch.setenv("MODELARC_REMOTE_TIMEOUT", "soon")
    result = bob("ls", "--remote", "x", ok=False)
    assert "MODELARC_REMOTE_TIMEOUT" in result.stderr
