"""A NUL character from a request never reaches the catalog: every route refuses it with a 400 naming it.

Found by probing `modelarc serve` on PostgreSQL (finding 7), whose text and JSON columns cannot hold NUL: the HTML
search form, the Hub's /api/models filters, /ui/datasets/{name}, an access request's justification and a pushed
offer's provenance or architecture reached a query or a row, a 500 (``psycopg.DataError``), most of them for an
anonymous caller. On SQLite they were stored, to break a later ``rebuild-catalog`` into PostgreSQL. The rule is
applied in two shared places: the app's middleware for the path and query of every request, and ``read_json`` for
every JSON body (plus the offer parser, which a puller runs on a remote's answer too).

SQLite and PostgreSQL (``module_database_url``), against a real server on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from liveserver import served_base_model

from modelarc.archive.access import list_requests, set_policy
from modelarc.archive.remote.offers import offer_for
from modelarc.archive.tokens import create_token


@pytest.fixture(scope="module")
def site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with served_base_model(module_database_url, tmp_path_factory.mktemp("nul")) as (archive, url):
        set_policy(archive, "acme/base", "gated", reason="ask first")
        yield {
            "url": url,
            "archive": archive,
            "read": create_token(archive, "read", "reader").token,
            "push": create_token(archive, "push", "pusher").token,
        }


def _catalog(archive: Any) -> dict[str, Any]:
    stats = {k: v for k, v in archive.stats().to_json().items() if k != "store_bytes_on_disk"}
    return {**stats, "requests": len(list_requests(archive, all_requests=True))}


ANONYMOUS_URLS = [
    "/?arch=%00",
    "/?license=a%00",
    "/?trained_on=%00",
    "/?name=%00",
    "/api/models?search=%00",
    "/api/models?author=%00",
    "/api/models?filter=%00",
    "/api/models?filter=license:%00",
    "/ui/datasets/a%00b",
    "/ui/models/acme/ba%00se",
    "/api/models/acme/ba%00se",
    "/v1/datasets/a%00b",
    "/v1/snapshots?license=a%00b",
    "/?%00=x",  # a NUL in a parameter's name is refused as well
]


@pytest.mark.parametrize("url", ANONYMOUS_URLS)
def test_a_nul_in_the_url_is_a_400_naming_it(site: dict[str, Any], url: str) -> None:
    r = httpx.get(site["url"] + url)
    assert r.status_code == 400, (url, r.status_code, r.text[:300])
    assert r.headers["content-type"] == "application/problem+json"
    assert "NUL" in r.json()["detail"]


@pytest.mark.parametrize(
    "url", ["/?license=mit", "/api/models?search=base", "/?name=%2500", "/v1/datasets/a%2500b"]
)
def test_text_without_a_nul_is_still_served(site: dict[str, Any], url: str) -> None:
    """``%2500`` is the three characters ``%00``, not a NUL: searched for (and found nowhere), not refused."""
    r = httpx.get(site["url"] + url)
    assert r.status_code in (200, 404), (url, r.status_code, r.text[:300])


def test_a_justification_with_a_nul_is_a_400_and_records_nothing(site: dict[str, Any]) -> None:
    before = _catalog(site["archive"])
    r = httpx.post(
        f"{site['url']}/v1/access/acme/base/requests",
        json={"justification": "hi\u0000there"},
        headers={"Authorization": f"Bearer {site['read']}"},
    )
    assert r.status_code == 400, r.text
    assert "NUL" in r.json()["detail"]
    assert _catalog(site["archive"]) == before


@pytest.mark.parametrize(
    "where",
    [("provenance", "description"), ("provenance", "license"), ("architecture", "model_type")],
    ids=lambda w: ".".join(w),
)
def test_an_offer_with_a_nul_is_a_400_on_check_and_commit(
    site: dict[str, Any], where: tuple[str, str]
) -> None:
    archive = site["archive"]
    offer, _manifest = offer_for(archive, "acme/base:v1")
    doc = offer.to_json()
    doc.pop("access", None)
    doc["ref"] = "acme/copy:v1"
    doc[where[0]] = {**doc[where[0]], where[1]: "mit\u0000"}
    before = _catalog(archive)
    for route in ("/v1/transfer/check", "/v1/transfer/commit"):
        r = httpx.post(site["url"] + route, json=doc, headers={"Authorization": f"Bearer {site['push']}"})
        assert r.status_code == 400, (route, r.text)
        assert "NUL" in r.json()["detail"], r.text
    assert _catalog(archive) == before


def test_the_honest_requests_are_accepted(site: dict[str, Any]) -> None:
    """The same routes with the NUL left out do what they are for (so the refusals above are about the NUL)."""
    r = httpx.post(
        f"{site['url']}/v1/access/acme/base/requests",
        json={"justification": "research"},
        headers={"Authorization": f"Bearer {site['read']}"},
    )
    assert r.status_code in (200, 201), r.text
    assert httpx.get(site["url"] + "/?license=mit").status_code == 200
