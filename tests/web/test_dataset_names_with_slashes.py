"""A dataset named as Hugging Face names them (``allenai/c4``) has a page and a /v1 answer, linked from the catalog.

Found by probing `modelarc serve` (finding 10): ``/ui/datasets/{name}`` and ``/v1/datasets/{name}`` took a plain
path parameter, so the catalog's own link ``/ui/datasets/allenai%2Fc4`` (decoded to ``allenai/c4``) matched no route
and answered 404. The name is looked up in the catalog, never used as a file path, so a traversal names no dataset.
A real server on 127.0.0.1, SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from typing import Any

import httpx
import pytest
from liveserver import served_base_model

from modelarc.archive.provenance.data import attach_data, load_data_manifest

NAMES = ["allenai/c4", "a/b?c#d", "the-pile"]


@pytest.fixture(scope="module")
def site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("slashes")
    with served_base_model(module_database_url, base) as (archive, url):
        data = base / "data.yaml"
        data.write_text(
            "version: 1\ndatasets:\n"
            "  - {name: allenai/c4, version: en, role: pretrain}\n"
            "  - {name: 'a/b?c#d', role: pretrain}\n"
            "  - {name: the-pile, role: pretrain}\n"
        )
        attach_data(archive, "acme/base:v1", load_data_manifest(data))
        yield {
            "url": url,
            "archive": archive,
            "secret": (archive.settings.keys_path / "signing-key.pem").read_bytes(),
        }


def test_v1_answers_for_a_name_with_a_slash_encoded_or_not(site: dict[str, Any]) -> None:
    for path in ("/v1/datasets/allenai%2Fc4", "/v1/datasets/allenai/c4"):
        r = httpx.get(site["url"] + path)
        assert r.status_code == 200, (path, r.text)
        versions = r.json()
        assert versions and versions[0]["name"] == "allenai/c4", versions
        assert versions[0]["used_by"], versions


def test_every_link_of_the_datasets_page_opens_its_dataset(site: dict[str, Any]) -> None:
    page = httpx.get(site["url"] + "/ui/datasets")
    assert page.status_code == 200
    links = re.findall(r'class="dataset-link" href="([^"]+)">([^<]+)</a>', page.text)
    assert sorted(unescape(name) for _href, name in links) == sorted(NAMES), links
    for href, name in links:
        r = httpx.get(site["url"] + unescape(href))
        assert r.status_code == 200, (href, r.status_code)
        assert unescape(name) in unescape(r.text)


def test_the_snapshot_page_links_to_the_dataset(site: dict[str, Any]) -> None:
    archive = site["archive"]
    _ref, snap = archive.resolve("acme/base:v1")
    page = httpx.get(f"{site['url']}/ui/snapshots/acme/base/{snap.digest}")
    href = re.search(r'class="dataset-link" href="([^"]+)">allenai/c4<', page.text)
    assert href, page.text[:2000]
    assert httpx.get(site["url"] + unescape(href.group(1))).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/datasets/..%2F..%2Fkeys%2Fsigning-key.pem",
        "/v1/datasets/../../keys/signing-key.pem",
        "/ui/datasets/..%2F..%2Fkeys%2Fsigning-key.pem",
        "/ui/datasets/allenai/c4/../../../keys/signing-key.pem",
        "/v1/datasets/allenai%2F..%2Fc4",
        "/v1/datasets/allenai",
        "/v1/datasets/" + "a/" * 200,
    ],
)
def test_a_traversal_or_a_partial_name_names_no_dataset(site: dict[str, Any], path: str) -> None:
    r = httpx.get(site["url"] + path)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert site["secret"] not in r.content and b"PRIVATE KEY" not in r.content
