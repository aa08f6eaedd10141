"""JSON text the catalog cannot hold never reaches it: a 400 naming what was wrong, never a 500.

Found by probing `modelarc serve` (finding 1): ``"\\ud800"`` is valid JSON and parses to a lone UTF-16 surrogate,
which neither SQLite nor PostgreSQL can store (``UnicodeEncodeError`` as the row is written): an access request's
justification (any read token) and a pushed offer's provenance were a 500 with a traceback. And a snapshot without
config.json is recorded with the architecture its offer states, which was taken unchecked:
``{"model_type": ["llama"]}`` reached the model_type column (``sqlite3.ProgrammingError``, a 500).

SQLite and PostgreSQL (``module_database_url``), against a real server on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from liveserver import served_base_model
from modelfactory import write_model

from modelarc.archive.access import list_requests, set_policy
from modelarc.archive.remote.offers import offer_for
from modelarc.archive.tokens import create_token
from modelarc.registry.bounds import catalog_value_problem

SURROGATE = "\ud800"


@pytest.fixture(scope="module")
def site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("surrogate")
    with served_base_model(module_database_url, base) as (archive, url):
        set_policy(archive, "acme/base", "gated", reason="ask first")
        bare = write_model(base / "bare")
        (bare / "config.json").unlink()  # its architecture is the offer's word
        archive.push(bare, "acme/bare:v1")
        yield {
            "url": url,
            "archive": archive,
            "read": create_token(archive, "read", "reader").token,
            "push": create_token(archive, "push", "pusher").token,
        }


def _catalog(archive: Any) -> dict[str, Any]:
    stats = {k: v for k, v in archive.stats().to_json().items() if k != "store_bytes_on_disk"}
    return {**stats, "requests": len(list_requests(archive, all_requests=True))}


def _post(site: dict[str, Any], route: str, doc: Any, token: str) -> httpx.Response:
    """``doc`` as JSON with every non-ASCII character escaped, as ``json.dumps`` writes it: a lone surrogate goes
    out as the six characters ``\\ud800`` (httpx's own ``json=`` cannot encode one)."""
    return httpx.post(
        site["url"] + route,
        content=json.dumps(doc).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


def _offer(site: dict[str, Any], source: str, ref: str) -> dict[str, Any]:
    offer, _manifest = offer_for(site["archive"], source)
    doc = offer.to_json()
    doc.pop("access", None)
    doc["ref"] = ref
    return doc


def test_text_that_is_no_utf8_is_a_catalog_value_problem() -> None:
    assert catalog_value_problem({"a": [f"x{SURROGATE}"]}) is not None
    assert catalog_value_problem({f"key{SURROGATE}": 1}) is not None
    # an escaped pair is one character once parsed: stored as any other
    assert catalog_value_problem(json.loads('{"a": "\\ud83d\\ude00 é"}')) is None


def test_a_justification_with_a_lone_surrogate_is_a_400_and_records_nothing(site: dict[str, Any]) -> None:
    before = _catalog(site["archive"])
    r = _post(site, "/v1/access/acme/base/requests", {"justification": f"please {SURROGATE}"}, site["read"])
    assert r.status_code == 400, r.text
    assert "surrogate" in r.json()["detail"]
    assert _catalog(site["archive"]) == before


@pytest.mark.parametrize(
    "where",
    [
        ("provenance", "description"),
        ("provenance", "license"),
        ("architecture", "model_type"),
        ("access", "reason"),
    ],
    ids=lambda w: ".".join(w),
)
def test_an_offer_with_a_lone_surrogate_is_a_400_on_check_and_commit(
    site: dict[str, Any], where: tuple[str, str]
) -> None:
    doc = _offer(site, "acme/base:v1", "acme/copy:v1")
    doc[where[0]] = {**(doc.get(where[0]) or {"level": "gated"}), where[1]: f"mit{SURROGATE}"}
    before = _catalog(site["archive"])
    for route in ("/v1/transfer/check", "/v1/transfer/commit"):
        r = _post(site, route, doc, site["push"])
        assert r.status_code == 400, (route, r.text)
        assert "surrogate" in r.json()["detail"], r.text
    assert _catalog(site["archive"]) == before


@pytest.mark.parametrize(
    ("architecture", "field"),
    [
        ({"model_type": ["llama"]}, "model_type"),
        ({"model_type": 7}, "model_type"),
        ({"model_type": "x" * 101}, "model_type"),  # the column holds 100 characters
        ({"architectures": "LlamaForCausalLM"}, "architectures"),
        ({"architectures": [["LlamaForCausalLM"]]}, "architectures"),
        ({"num_layers": "2"}, "num_layers"),
        ({"vocab_size": True}, "vocab_size"),
        ({"context_length": -1}, "context_length"),
        ({"gguf_quantization": [{"Q4_K": 1}]}, "gguf_quantization"),
    ],
    ids=lambda v: json.dumps(v)[:40],
)
def test_an_architecture_of_the_wrong_type_is_a_400_naming_the_field(
    site: dict[str, Any], architecture: dict[str, Any], field: str
) -> None:
    """The snapshot has no config.json, so the offer's architecture is what would be recorded."""
    doc = _offer(site, "acme/bare:v1", "acme/bare-copy:v1")
    doc["architecture"] = architecture
    before = _catalog(site["archive"])
    for route in ("/v1/transfer/check", "/v1/transfer/commit"):
        r = _post(site, route, doc, site["push"])
        assert r.status_code == 400, (route, r.text)
        assert f"architecture.{field}" in r.json()["detail"], r.text
    assert _catalog(site["archive"]) == before


def test_the_honest_requests_are_accepted(site: dict[str, Any]) -> None:
    """The same routes without the surrogate, and a well-typed architecture, do what they are for."""
    r = _post(site, "/v1/access/acme/base/requests", {"justification": "research \ud83d\ude00"}, site["read"])
    assert r.status_code in (200, 201), r.text
    doc = _offer(site, "acme/bare:v1", "acme/bare-named:v1")
    doc["architecture"] = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_layers": 2}
    r = _post(site, "/v1/transfer/commit", doc, site["push"])
    assert r.status_code == 201, r.text
    _ref, snap = site["archive"].resolve("acme/bare-named:v1")
    assert snap.architecture == doc["architecture"]
