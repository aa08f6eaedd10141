"""Requests an anonymous attacker can send: each is refused cheaply with a bounded 4xx, never a 500 or an echo.

Every test drives a real uvicorn server on 127.0.0.1 (tests/liveserver.py) with httpx, or with a raw socket where
the point is what the server does before the request is complete (an oversized body it must not wait for).
SQLite and PostgreSQL: the search bounds exist because the catalog's integers are 64-bit on both.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from liveserver import serve
from modelfactory import write_model

from modelarc.api.problems import MAX_DETAIL, MAX_ECHO, clip, problem
from modelarc.api.transfer import MAX_MISSING_BODY, MAX_MISSING_QUERY
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


# --------------------------------------------------------------------------------------- POST /v1/objects/missing


def test_missing_refuses_a_declared_oversized_body_without_waiting_for_it(site) -> None:
    """200 MB declared, 1 KB sent: the 413 must come from the Content-Length alone."""
    head = (
        b"POST /v1/objects/missing HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 200000000\r\n\r\n"
    )
    answer = raw_exchange(site["url"], head, iter([b'{"ids": ["' + b"a" * 1000]))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_missing_stops_reading_a_chunked_body_at_its_limit(site) -> None:
    """No Content-Length: the server reads up to the limit, then answers 413 without waiting for the end."""
    head = (
        b"POST /v1/objects/missing HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    block = b"a" * (1 << 20)
    chunks = (b"%x\r\n%s\r\n" % (len(block), block) for _ in range(MAX_MISSING_BODY // len(block) + 2))
    answer = raw_exchange(site["url"], head, chunks)  # never sends the closing 0-length chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_missing_names_a_bad_id_by_index_and_quotes_at_most_80_characters(site) -> None:
    good = hashlib.sha256(b"x").hexdigest()
    response = httpx.post(
        f"{site['url']}/v1/objects/missing", json={"ids": [good, "z" * 1_000_000]}, timeout=30
    )
    detail = is_problem(response, 400)["detail"]
    assert "ids[1]" in detail
    assert "z" * 81 not in detail and len(response.content) < 1000


@pytest.mark.parametrize(
    "bad",
    [
        "A" * 64,  # uppercase
        "sha256:" + "a" * 64,  # a snapshot-style prefix is not an object id
        "a" * 64 + "\n",  # a trailing newline slips through re.match("...$")
        "a" * 63,
        "g" * 64,
        64,
        None,
    ],
    ids=["uppercase", "prefixed", "newline", "short", "not-hex", "number", "null"],
)
def test_missing_accepts_only_64_lowercase_hex_ids(site, bad: object) -> None:
    response = httpx.post(f"{site['url']}/v1/objects/missing", json={"ids": ["b" * 64, bad]})
    assert "ids[1]" in is_problem(response, 400)["detail"]


@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b"not json", b'{"ids": "a"}', b"[]", b'{"ids": {"0": "a"}}', b"\xff\xfe"]
)
def test_missing_refuses_malformed_bodies_with_400(site, body: bytes) -> None:
    response = httpx.post(
        f"{site['url']}/v1/objects/missing", content=body, headers={"Content-Type": "application/json"}
    )
    is_problem(response, 400)


def test_missing_refuses_more_ids_than_one_query_may_hold(site) -> None:
    too_many = ["c" * 64] * (MAX_MISSING_QUERY + 1)
    response = httpx.post(f"{site['url']}/v1/objects/missing", json={"ids": too_many}, timeout=60)
    is_problem(response, 413)


def test_missing_still_answers_which_objects_are_absent(site) -> None:
    archive: Archive = site["archive"]
    _ref, snap = archive.resolve("acme/base:v1")
    held = snap.digest.removeprefix("sha256:")  # the manifest object's id is the snapshot id
    absent = hashlib.sha256(b"never stored").hexdigest()
    response = httpx.post(f"{site['url']}/v1/objects/missing", json={"ids": [held, absent]})
    assert response.status_code == 200 and response.json() == {"missing": [absent]}


# --------------------------------------------------------------------------------------- GET /v1/objects/{id}


def test_an_unknown_object_is_404_and_a_malformed_id_is_400(site) -> None:
    url = site["url"]
    unknown = is_problem(httpx.get(f"{url}/v1/objects/{'d' * 64}"), 404)
    assert "d" * 64 in unknown["detail"]
    for bad in ("d" * 63, "D" * 64, "sha256:" + "d" * 64, "d" * 5000):
        detail = is_problem(httpx.get(f"{url}/v1/objects/{bad}"), 400)["detail"]
        assert bad not in detail


# --------------------------------------------------------------------------------------- Range on the Hub routes


def get_weights(site, range_header: str, method: str = "GET") -> httpx.Response:
    url = f"{site['url']}/acme/base/resolve/v1/model.safetensors"
    return httpx.request(method, url, headers={"Range": range_header})


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_range_starting_beyond_64_bits_is_416_not_500(site, method: str) -> None:
    response = get_weights(site, f"bytes={HUGE}-", method)
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(site['weights'])}"


def test_huge_range_ends_and_suffixes_mean_the_whole_file(site) -> None:
    weights = site["weights"]
    for header in (f"bytes=0-{HUGE}", f"bytes=-{HUGE}", f"bytes=0-{'0' * 4999}{len(weights)}"):
        response = get_weights(site, header)
        assert response.status_code == 206, header[:40]
        assert response.content == weights
        assert response.headers["content-range"] == f"bytes 0-{len(weights) - 1}/{len(weights)}"


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-1,5-6",
        "bytes=0-1, 5-6",
        "items=0-5",
        "Bytes=0-5",
        "bytes=5-3",
        "bytes=abc",
        "bytes=-",
        "bytes 0-5",
    ],
)
def test_ranges_we_do_not_serve_are_ignored_with_the_whole_file(site, header: str) -> None:
    """As nginx and Apache do: several ranges, other units and malformed ranges get 200 and the whole body."""
    response = get_weights(site, header)
    assert response.status_code == 200, header
    assert response.content == site["weights"] and "content-range" not in response.headers


def test_a_valid_range_is_served_and_an_unsatisfiable_one_is_416(site) -> None:
    weights = site["weights"]
    assert get_weights(site, "bytes=10-19").content == weights[10:20]
    assert get_weights(site, "bytes=-10").content == weights[-10:]
    assert get_weights(site, f"bytes={len(weights) - 5}-").content == weights[-5:]
    for header in (f"bytes={len(weights)}-", f"bytes={len(weights)}-{len(weights) + 9}", "bytes=-0"):
        response = get_weights(site, header)
        assert response.status_code == 416, header
        assert response.headers["content-range"] == f"bytes */{len(weights)}"
