"""Conditional requests on the Hub file route, the headers every answer carries, HEAD wherever GET is routed, and the
bounds of ``POST /v1/objects/missing``: each checked with httpx against a real server (tests/liveserver.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from liveserver import serve
from modelfactory import write_model

from modelarc.api.transfer import MAX_MISSING_ANONYMOUS
from modelarc.archive.remote.client import MISSING_BATCH
from modelarc.archive.repository import Archive
from modelarc.archive.tokens import create_token

FILE = "/acme/base/resolve/v1/config.json"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("hardening")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("MODELARC_DATABASE_URL", raising=False)
        archive, _ = Archive.init(base / "home")
    source = write_model(
        base / "src", extra_files={"evil.html": b"<script>alert(1)</script>", 'ünï "x".svg': b"<svg/>"}
    )
    archive.push(source, "acme/base:v1")
    token = create_token(archive, "read", "reader").token
    with serve(archive) as url:
        yield {"url": url, "archive": archive, "source": source, "token": token}
    archive.close()


def _etag(site: dict[str, Any]) -> str:
    return httpx.head(site["url"] + FILE).headers["etag"]


# ------------------------------------------------------------------------------------ conditional requests


def test_if_range_with_a_stale_etag_sends_the_whole_file(site) -> None:
    whole = (site["source"] / "config.json").read_bytes()
    answer = httpx.get(site["url"] + FILE, headers={"If-Range": '"' + "0" * 64 + '"', "Range": "bytes=0-1"})
    assert answer.status_code == 200 and answer.content == whole
    assert "content-range" not in answer.headers


def test_if_range_with_the_current_etag_sends_the_range(site) -> None:
    whole = (site["source"] / "config.json").read_bytes()
    answer = httpx.get(site["url"] + FILE, headers={"If-Range": _etag(site), "Range": "bytes=0-1"})
    assert answer.status_code == 206 and answer.content == whole[:2]


@pytest.mark.parametrize("validator", ["W/{etag}", "Wed, 21 Oct 2015 07:28:00 GMT"], ids=["weak", "date"])
def test_if_range_with_a_weak_tag_or_a_date_sends_the_whole_file(site, validator: str) -> None:
    header = validator.format(etag=_etag(site))
    answer = httpx.get(site["url"] + FILE, headers={"If-Range": header, "Range": "bytes=0-1"})
    assert answer.status_code == 200


def test_if_match_naming_another_etag_is_412(site) -> None:
    answer = httpx.get(site["url"] + FILE, headers={"If-Match": '"nope"'})
    assert answer.status_code == 412 and answer.headers["etag"] == _etag(site)
    assert answer.headers["vary"] == "Authorization"
    assert httpx.get(site["url"] + FILE, headers={"If-Match": _etag(site)}).status_code == 200
    assert httpx.get(site["url"] + FILE, headers={"If-Match": "*"}).status_code == 200


@pytest.mark.parametrize("header", ["{etag}", "*", '"other", {etag}', "W/{etag}"])
def test_if_none_match_naming_the_current_etag_is_304(site, header: str) -> None:
    etag = _etag(site)
    for method in ("GET", "HEAD"):
        answer = httpx.request(
            method, site["url"] + FILE, headers={"If-None-Match": header.format(etag=etag)}
        )
        assert answer.status_code == 304 and answer.content == b""
        assert answer.headers["etag"] == etag and "x-repo-commit" in answer.headers


def test_if_none_match_naming_another_etag_sends_the_file(site) -> None:
    answer = httpx.get(site["url"] + FILE, headers={"If-None-Match": '"other"'})
    assert answer.status_code == 200 and answer.content == (site["source"] / "config.json").read_bytes()


# ------------------------------------------------------------------------------------ headers and HEAD


@pytest.mark.parametrize(
    "path", ["/", "/v1/models", FILE, "/api/models", "/nowhere", "/v1/snapshots/acme/base/nope", "/healthz"]
)
def test_every_answer_says_nosniff(site, path: str) -> None:
    assert httpx.get(site["url"] + path).headers.get("x-content-type-options") == "nosniff"


def test_html_pages_carry_a_strict_content_security_policy(site) -> None:
    for path in ("/", "/ui/models/acme/base", "/ui/models/acme/none", "/ui/datasets", "/ui/timeline"):
        policy = httpx.get(site["url"] + path).headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert "script-src" not in policy  # no page runs a script: default-src 'none' refuses every one


@pytest.mark.parametrize(
    ("name", "disposition"),
    [
        ("evil.html", 'attachment; filename="evil.html"'),
        ('ünï "x".svg', "attachment; filename=\"_n_ _x_.svg\"; filename*=UTF-8''%C3%BCn%C3%AF%20%22x%22.svg"),
    ],
)
def test_files_are_served_as_attachments(site, name: str, disposition: str) -> None:
    answer = httpx.get(site["url"] + "/acme/base/resolve/v1/" + name)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-disposition"] == disposition
    assert answer.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize("path", ["/", "/ui/models/acme/base", "/ui/timeline", "/v1/models", "/api/models"])
def test_head_answers_wherever_get_does(site, path: str) -> None:
    get = httpx.get(site["url"] + path)
    head = httpx.head(site["url"] + path)
    assert head.status_code == get.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


def test_head_of_an_object_sends_no_body(site) -> None:
    archive: Archive = site["archive"]
    _ref, snap = archive.resolve("acme/base:v1")
    oid = snap.digest.removeprefix("sha256:")
    head = httpx.head(f"{site['url']}/v1/objects/{oid}")
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(httpx.get(f"{site['url']}/v1/objects/{oid}").content)


# ------------------------------------------------------------------------------------ POST /v1/objects/missing


def test_missing_refuses_more_than_the_anonymous_limit_without_a_token(site) -> None:
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(MAX_MISSING_ANONYMOUS + 1)]
    answer = httpx.post(f"{site['url']}/v1/objects/missing", json={"ids": ids}, timeout=60)
    assert answer.status_code == 413, answer.text[:300]
    answer = httpx.post(f"{site['url']}/v1/objects/missing", json={"ids": ids[:-1]}, timeout=60)
    assert answer.status_code == 200 and len(answer.json()["missing"]) == MAX_MISSING_ANONYMOUS
    with_token = {"Authorization": f"Bearer {site['token']}"}
    answer = httpx.post(
        f"{site['url']}/v1/objects/missing", json={"ids": ids}, headers=with_token, timeout=60
    )
    assert answer.status_code == 200 and len(answer.json()["missing"]) == MAX_MISSING_ANONYMOUS + 1


def test_the_remote_client_asks_in_batches_an_anonymous_server_accepts() -> None:
    assert MISSING_BATCH <= MAX_MISSING_ANONYMOUS


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_missing_requires_a_json_body(site, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    body = b'{"ids": []}'
    answer = httpx.post(f"{site['url']}/v1/objects/missing", content=body, headers=headers)
    assert answer.status_code == 415 and answer.headers["x-error-code"] == "UnsupportedMediaType"
    answer = httpx.post(
        f"{site['url']}/v1/objects/missing",
        content=body,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert answer.status_code == 200


def test_batch_requires_a_json_body(site) -> None:
    answer = httpx.post(
        f"{site['url']}/v1/objects/batch", content=b'{"ids": []}', headers={"Content-Type": "text/plain"}
    )
    assert answer.status_code == 415
