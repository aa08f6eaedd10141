"""Requests an anonymous attacker can send: each is refused cheaply with a bounded 4xx, never a 500 or an echo.

Every test drives a real uvicorn server on 127.0.0.1 (tests/liveserver.py) with httpx, or with a raw socket where
the point is what the server does before the request is complete (an oversized body it must not wait for).
SQLite and PostgreSQL: the search bounds exist because the catalog's integers are 64-bit on both.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from liveserver import serve
from modelfactory import write_model

from modelarc.api.limits import NAME_PATTERN, REV_PATTERN
from modelarc.api.problems import MAX_DETAIL, MAX_ECHO, clip, problem
from modelarc.api.transfer import MAX_MISSING_BODY, MAX_MISSING_QUERY
from modelarc.archive.repository import Archive
from modelarc.errors import InvalidRefError
from modelarc.registry.refs import parse_ref

HUGE = "9" * 5000  # more digits than Python converts to an int (4300): int() raises, it must never be tried
MAX_INT = 2**63 - 1


@pytest.fixture(scope="module")
def site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One snapshot (acme/base:v1) served anonymously, and its weights file's bytes for range checks.

    Module-scoped (no test here changes the archive): one archive and one server per catalog backend.
    """
    base = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as env:  # the archive keeps its settings; the env is restored at once
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
    """600 000 characters: inside the anonymous body limit (10 000 ids), so the id is judged, not the size."""
    good = hashlib.sha256(b"x").hexdigest()
    response = httpx.post(
        f"{site['url']}/v1/objects/missing", json={"ids": [good, "z" * 600_000]}, timeout=30
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
        "bytes=0 -5",
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


def test_the_unit_is_bytes_in_ascii_case_only() -> None:
    """A long s (U+017F) folds to "s" in Unicode case. No HTTP client sends it as such (header values are bytes,
    read as latin-1), so the parser is asked directly."""
    from modelarc.api.hub import requested_range

    assert requested_range("BYTES=0-5", 100) == (0, 6)
    assert requested_range("byte\u017f=0-5", 100) is None


def test_a_valid_range_is_served_and_an_unsatisfiable_one_is_416(site) -> None:
    weights = site["weights"]
    assert get_weights(site, "bytes=10-19").content == weights[10:20]
    assert get_weights(site, "bytes=-10").content == weights[-10:]
    assert get_weights(site, f"bytes={len(weights) - 5}-").content == weights[-5:]
    # RFC 9110 14.1: "All range unit names are case-insensitive"; whitespace after the "=" is taken (api/hub.py)
    for header in ("BYTES=10-19", "Bytes=10-19", "bytes= 10-19", "bytes=\t10-19"):
        response = get_weights(site, header)
        assert response.status_code == 206 and response.content == weights[10:20], header
        assert response.headers["content-range"] == f"bytes 10-19/{len(weights)}"
    for header in (f"bytes={len(weights)}-", f"bytes={len(weights)}-{len(weights) + 9}", "bytes=-0"):
        response = get_weights(site, header)
        assert response.status_code == 416, header
        assert response.headers["content-range"] == f"bytes */{len(weights)}"
        assert response.headers["vary"] == "Authorization"  # as every answer of a route sending file bytes


# --------------------------------------------------------------------------------------- bounded parameters


@pytest.mark.parametrize("param", ["min_params", "max_params"])
@pytest.mark.parametrize(
    "value", [str(MAX_INT + 1), "99999999999999999999", HUGE, "9999999T", "1" + "0" * 40]
)
def test_search_refuses_parameter_counts_beyond_64_bits(site, param: str, value: str) -> None:
    is_problem(httpx.get(f"{site['url']}/v1/snapshots", params={param: value}), 400)


def test_search_accepts_the_largest_64_bit_count_exactly(site) -> None:
    """float() rounds 2^63-1 up to 2^63, which overflows the catalog: the count must be parsed exactly."""
    url = site["url"]
    assert (
        httpx.get(f"{url}/v1/snapshots", params={"max_params": str(MAX_INT)}).json()[0]["model"]
        == "acme/base"
    )
    assert httpx.get(f"{url}/v1/snapshots", params={"min_params": str(MAX_INT)}).json() == []


@pytest.mark.parametrize(
    "path, params",
    [
        ("/v1/snapshots", {"name": "x" * 5000}),
        ("/v1/snapshots", {"cutoff_before": "2" * 5000}),
        ("/v1/snapshots", {"cursor": "A" * 5000}),
        ("/v1/models", {"q": "x" * 5000}),
        ("/v1/models", {"limit": HUGE}),
        ("/v1/snapshots/acme/base/" + "v" * 5000, {}),
        ("/v1/models/" + "n" * 5000 + "/base", {}),
        ("/api/models/acme/base/revision/" + "r" * 5000, {}),
        ("/acme/base/resolve/v1/" + "p" * 5000, {}),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
def test_oversized_parameters_are_400_and_never_echoed(site, path: str, params: dict[str, str]) -> None:
    response = httpx.get(site["url"] + path, params=params)
    assert response.status_code == 400, response.text[:300]
    assert len(response.content) < 1000


def test_not_found_answers_quote_at_most_80_characters_of_the_request(site) -> None:
    url = site["url"]
    long_path = "/".join(["p" * 200] * 20) + ".bin"  # 4000 characters of valid names (a segment > 255 bytes is 400)
    missing = httpx.get(f"{url}/acme/base/resolve/v1/{long_path}")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"
    assert "p" * 81 not in missing.text
    revision = httpx.get(f"{url}/api/models/acme/base/revision/{'r' * 250}")
    assert revision.status_code == 404 and "r" * 81 not in revision.text


@pytest.mark.parametrize(
    "query", [{"page": HUGE}, {"page": "0"}, {"page": "abc"}, {"page": "-1"}, {"page": "1" * 7}]
)
def test_html_home_refuses_a_bad_page_with_400(site, query: dict[str, str]) -> None:
    response = httpx.get(site["url"] + "/", params=query)
    assert response.status_code == 400 and response.headers["content-type"].startswith("text/html")
    assert len(response.content) < 20_000 and HUGE not in response.text


@pytest.mark.parametrize(
    "query", [{"min_params": "99999999999999999999"}, {"max_params": HUGE}, {"arch": "x" * 5000}]
)
def test_html_home_refuses_unbounded_filters_with_400(site, query: dict[str, str]) -> None:
    response = httpx.get(site["url"] + "/", params=query)
    assert response.status_code == 400 and 'id="error"' in response.text
    assert "x" * 301 not in response.text and HUGE not in response.text


def test_html_home_still_pages_and_filters(site) -> None:
    url = site["url"]
    assert httpx.get(url + "/", params={"page": "1", "min_params": "1K"}).status_code == 200
    assert httpx.get(url + "/", params={"page": "", "name": ""}).status_code == 200  # an empty form
    assert httpx.get(url + "/", params={"page": "2"}).status_code == 200


# --------------------------------------------------------------------------------------- the schema's grammar


@pytest.mark.parametrize(
    "text",
    [
        "acme",
        "a",
        "A.b_c-d",
        "x" * 100,
        "x" * 101,
        ".hidden",
        "-a",
        "_a",
        "a/b",
        "a b",
        "é",
        "",
        "a" * 99 + "\n",
    ],
)
def test_the_schema_name_pattern_is_the_ref_grammar(text: str) -> None:
    """api/limits.py restates registry/refs.py's grammar for OpenAPI: the two must accept the same names."""
    assert bool(re.fullmatch(NAME_PATTERN.strip("^$"), text)) == _ref_accepts(f"{text}/m:v1")
    assert bool(re.fullmatch(NAME_PATTERN.strip("^$"), text)) == _ref_accepts(f"ns/{text}:v1")


@pytest.mark.parametrize(
    "rev",
    ["v1", "_x", "latest", "t" * 128, "t" * 129, ".v", "sha256:abcd", "sha256:abc", "sha256:" + "f" * 64],
)
def test_the_schema_revision_pattern_is_the_ref_grammar(rev: str) -> None:
    ref = f"ns/m@{rev}" if rev.startswith("sha256:") else f"ns/m:{rev}"
    assert bool(re.fullmatch(REV_PATTERN.strip("^$"), rev)) == _ref_accepts(ref)


def _ref_accepts(text: str) -> bool:
    try:
        parse_ref(text)
    except InvalidRefError:
        return False
    return True
