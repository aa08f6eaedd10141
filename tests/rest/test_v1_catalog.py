"""The /v1 JSON API over a real archive: every resource, pagination, ETags, problem+json; SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from modelfactory import finetune, tiny_tensors, write_model

from modelarc.api.app import create_app
from modelarc.archive.provenance.data import attach_data, load_data_manifest
from modelarc.archive.repository import Archive
from modelarc.registry.records import Provenance


@pytest.fixture
def client(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, Archive]]:
    monkeypatch.setenv("MODELARC_DATABASE_URL", database_url)
    archive, _ = Archive.init(tmp_path / "home")
    base = archive.push(write_model(tmp_path / "base"), "acme/base:v1", Provenance(license="mit"))
    for i in range(2, 6):  # five snapshots of acme/base, tagged v1..v5
        archive.push(write_model(tmp_path / f"b{i}", tiny_tensors(seed=i)), f"acme/base:v{i}")
    archive.push(
        write_model(tmp_path / "tuned", finetune(tiny_tensors(), ["model.layers.0.mlp.weight"])),
        "acme/tuned:v1",
        Provenance(parents=((f"acme/base@{base.snapshot}", "finetune"),), cutoff=None),
    )
    data = tmp_path / "data.yaml"
    data.write_text("version: 1\ndatasets:\n  - {name: the-pile, version: '1.0', role: pretrain}\n")
    attach_data(archive, "acme/base:v1", load_data_manifest(data))
    with TestClient(create_app(lambda: archive)) as c:
        yield c, archive
    archive.close()


def walk_pages(c: TestClient, url: str) -> list[dict]:
    rows: list[dict] = []
    while url:
        r = c.get(url)
        assert r.status_code == 200, r.text
        rows += r.json()
        link = r.headers.get("link")
        url = httpx.URL(link.split(";")[0].strip("<>")).raw_path.decode() if link else ""
    return rows


def test_search_pages_cover_every_snapshot_once(client) -> None:
    c, _archive = client
    everything = c.get("/v1/snapshots").json()
    assert len(everything) == 6
    paged = walk_pages(c, "/v1/snapshots?limit=2")
    assert [r["snapshot"] for r in paged] == [r["snapshot"] for r in everything]
    by_cutoff = walk_pages(c, "/v1/snapshots?limit=4&order=cutoff")
    assert sorted(r["snapshot"] for r in by_cutoff) == sorted(r["snapshot"] for r in everything)
    assert [r["model"] for r in c.get("/v1/snapshots?license=mit").json()] == ["acme/base"]
    assert [r["model"] for r in c.get("/v1/snapshots?trained_on=the-pile").json()] == ["acme/base"]
    assert [r["model"] for r in c.get("/v1/snapshots?descendant_of=acme/base:v1").json()] == ["acme/tuned"]
    assert c.get("/v1/snapshots?min_params=10M").json() == []
    assert {r["model"] for r in c.get("/v1/snapshots?name=TUNED").json()} == {"acme/tuned"}
    assert len(c.get("/v1/snapshots?name=acme/").json()) == 6


def test_models_tags_and_datasets(client) -> None:
    c, _archive = client
    assert [m["model"] for m in walk_pages(c, "/v1/models?limit=1")] == ["acme/base", "acme/tuned"]
    assert [m["model"] for m in c.get("/v1/models?q=TUN").json()] == ["acme/tuned"]
    detail = c.get("/v1/models/acme/base").json()
    assert len(detail["snapshots"]) == 5 and detail["tag_moves"]
    tags = c.get("/v1/models/acme/base/tags").json()
    assert sorted(tags) == ["v1", "v2", "v3", "v4", "v5"]
    assert c.get("/v1/datasets").json()[0]["name"] == "the-pile"
    used = c.get("/v1/datasets/the-pile").json()[0]["used_by"]
    assert [u["model"] for u in used] == ["acme/base"]


def test_datasets_page_by_name_through_the_link_header(client, tmp_path: Path) -> None:
    c, archive = client
    more = tmp_path / "more.yaml"
    more.write_text(
        "version: 1\ndatasets:\n  - {name: books, role: pretrain}\n  - {name: code, role: pretrain}\n"
        "  - {name: the-pile, version: '1.0', role: eval}\n"  # the same dataset as before: not a new row
    )
    attach_data(archive, "acme/tuned:v1", load_data_manifest(more))
    everything = c.get("/v1/datasets").json()
    assert [(d["name"], d["snapshots"]) for d in everything] == [("books", 1), ("code", 1), ("the-pile", 2)]
    first = c.get("/v1/datasets?limit=2")
    assert [d["name"] for d in first.json()] == ["books", "code"] and 'rel="next"' in first.headers["link"]
    last = c.get(httpx.URL(first.headers["link"].split(";")[0].strip("<>")).raw_path.decode())
    assert last.json() == everything[2:] and "link" not in last.headers
    assert walk_pages(c, "/v1/datasets?limit=1") == everything
    assert "link" not in c.get("/v1/datasets?limit=3").headers


def test_dataset_time_range_is_given_at_the_precision_of_the_manifest(client, tmp_path: Path) -> None:
    """``end: "2021-05"`` is all of May: /v1 and the dataset page say 2021-05, never 2021-05-01."""
    c, archive = client
    more = tmp_path / "dated.yaml"
    more.write_text(
        "version: 1\ndatasets:\n  - {name: news, role: pretrain, time_range: {start: '2015', end: '2021-05'}}\n"
    )
    attach_data(archive, "acme/tuned:v1", load_data_manifest(more))
    expected = {"start": "2015", "end": "2021-05", "start_precision": "year", "end_precision": "month"}
    assert c.get("/v1/datasets/news").json()[0]["time_range"] == expected
    assert [d["time_range"] for d in c.get("/v1/datasets").json() if d["name"] == "news"] == [expected]
    assert c.get("/v1/snapshots/acme/tuned/v1").json()["datasets"][0]["time_range"] == expected
    page = c.get("/ui/datasets/news").text
    assert "2015 – 2021-05" in page and "2021-05-01" not in page


def test_snapshot_manifest_files_tensors_and_lineage(client) -> None:
    c, archive = client
    shown = c.get("/v1/snapshots/acme/tuned/v1").json()
    digest = shown["snapshot"]
    assert shown["parents"][0]["relation"] == "finetune"
    manifest = c.get(f"/v1/snapshots/acme/tuned/{digest}/manifest")
    assert "sha256:" + hashlib.sha256(manifest.content).hexdigest() == digest  # the client can verify it
    assert "immutable" in manifest.headers["cache-control"]
    files = c.get("/v1/snapshots/acme/tuned/v1/files").json()
    assert {f["path"] for f in files} == {"config.json", "model.safetensors", "tokenizer.json"}
    tensors = walk_pages(c, "/v1/snapshots/acme/tuned/v1/tensors?limit=3")
    assert len(tensors) == shown["tensor_count"] and len({t["name"] for t in tensors}) == len(tensors)
    lineage = c.get("/v1/lineage/acme/tuned/v1").json()
    assert lineage["ancestors"][0]["model"] == "acme/base"
    assert c.get("/v1/lineage/acme/base/v1").json()["descendants"][0]["model"] == "acme/tuned"


def test_etags_answer_304_and_change_with_the_resource(client) -> None:
    c, archive = client
    first = c.get("/v1/models/acme/base/tags")
    etag = first.headers["etag"]
    again = c.get("/v1/models/acme/base/tags", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    archive.tag("acme/base:v2", "stable")
    moved = c.get("/v1/models/acme/base/tags", headers={"If-None-Match": etag})
    assert moved.status_code == 200 and moved.headers["etag"] != etag
    stats = c.get("/v1/stats")
    assert c.get("/v1/stats", headers={"If-None-Match": f"W/{stats.headers['etag']}"}).status_code == 304


def test_errors_are_problem_json(client) -> None:
    c, _archive = client
    for url, status in [
        ("/v1/models/acme/nope", 404),
        ("/v1/snapshots/acme/base/v99", 404),
        ("/v1/datasets/nope", 404),
        ("/v1/snapshots?limit=0", 400),
        ("/v1/snapshots?limit=5000", 400),
        ("/v1/snapshots?cursor=not-a-cursor", 400),
        ("/v1/datasets?cursor=not-a-cursor", 400),
        ("/v1/datasets?cursor=eyJvIjogMn0", 400),  # a cursor of another list: {"o": 2}
        ("/v1/datasets?cursor=eyJhIjogOTk5OTl9", 400),  # {"a": 99999}: no such dataset
        ("/v1/datasets?limit=0", 400),
        ("/v1/snapshots?cutoff_before=yesterday", 400),
        ("/v1/nothing-here", 404),
    ]:
        r = c.get(url)
        assert r.status_code == status, (url, r.text)
        assert r.headers["content-type"].startswith("application/problem+json"), url
        body = r.json()
        assert body["status"] == status and body["detail"], url


TRAVERSALS = [
    "/v1/snapshots/acme/base/..",
    "/v1/snapshots/acme/base/..%2F..%2F..%2Fetc%2Fpasswd",
    "/v1/snapshots/acme/base/v1%00",
    "/v1/snapshots/acme/..%5C..%5Cwindows/v1",
    "/v1/objects/..%2F..%2Fregistry.db",
    "/v1/objects/%2E%2E",
    "/api/models/acme/base/tree/v1/..%2F..%2Fregistry.db",
    "/acme/base/resolve/v1/..%2F..%2F..%2Fregistry.db",
    "/acme/base/resolve/v1/%2E%2E/%2E%2E/registry.db",
    "/acme/base/resolve/v1/config.json%00.txt",
    "/acme/base/resolve/..%2F..%2Fkeys/signing-key.pem",
    "/v1/datasets/..%2F..%2Fkeys%2Fsigning-key.pem",
]


@pytest.mark.parametrize("url", TRAVERSALS)
def test_path_traversal_is_refused_everywhere(client, url: str) -> None:
    c, archive = client
    secret = (archive.settings.keys_path / "signing-key.pem").read_bytes()
    r = c.get(url)
    assert 400 <= r.status_code < 500, (url, r.status_code)
    assert b"PRIVATE KEY" not in r.content and secret not in r.content
    assert b"SQLite format" not in r.content


def test_v1_snapshot_search_declares_exactly_the_search_filters() -> None:
    """/v1's query parameters are held to the one list the CLI options and the web form are built from."""
    from modelarc.api.app import create_app
    from modelarc.archive.catalog.filters import SEARCH_FILTERS

    schema = create_app(lambda: None).openapi()  # type: ignore[arg-type,return-value]
    declared = {
        p["name"] for p in schema["paths"]["/v1/snapshots"]["get"]["parameters"] if p["in"] == "query"
    }
    assert declared - {"order", "limit", "cursor"} == {f.key for f in SEARCH_FILTERS}


@pytest.mark.parametrize(
    "url",
    [
        "/v1/snapshots?trained_on=%00",
        "/v1/snapshots?license=a%00b",
        "/v1/snapshots?name=%00",
        "/v1/datasets/a%00b",
    ],
)
def test_a_nul_in_free_text_is_a_400_not_a_database_error(client, url: str) -> None:
    """Found by the schema fuzzer on PostgreSQL, whose text columns cannot hold NUL: the query reached it (500)."""
    c, _archive = client
    r = c.get(url)
    assert r.status_code == 400, (url, r.status_code, r.text)


@pytest.mark.parametrize(
    "query",
    [
        "min_params=7B&max_params=1B",
        "cutoff_after=2024&cutoff_before=2023-12-31",
        "cutoff_after=2023&cutoff_before=2023",
    ],
)
def test_a_range_nothing_can_be_in_is_a_400(client, query: str) -> None:
    c, _archive = client
    r = c.get(f"/v1/snapshots?{query}")
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", r.text
    assert "no " in r.json()["detail"] and "can be both" in r.json()["detail"]
