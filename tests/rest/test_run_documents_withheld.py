"""A recorded run's document goes only to who may read its snapshot's weights, over HTTP, on SQLite and PostgreSQL.

`modelarc run REF --record` stores the run document (prompt, parameters, the model's output) as content of the
snapshot. The server judged it as public metadata, like a manifest: anyone who learnt its id read what a gated or
restricted model said, though its output is derived from the weights it withholds. A run document is now judged as
its snapshot's weights are, on every route that serves objects, and no snapshot offer (pull --remote, mirror sync)
names it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
import transformers
from hostilekit import batch_frames
from liveserver import serve
from modelfactory import tiny_gpt2
from sqlalchemy import select

from modelarc.archive.access import grant, set_policy
from modelarc.archive.remote import batch
from modelarc.archive.repository import Archive
from modelarc.archive.runtime.runs import GenerationParams, generate, list_runs, record_run
from modelarc.archive.tokens import create_token
from modelarc.registry.models import RunRecord
from modelarc.storage import ObjectId

PROMPT = "the model was"


def _gpt2(folder: Path, seed: int) -> Path:
    """A tiny GPT-2 of its own weights (``tiny_gpt2`` alone makes the same bytes, hence the same snapshot id)."""
    tiny_gpt2(folder)
    config = transformers.GPT2Config.from_pretrained(folder)
    torch.manual_seed(seed)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def _run_document(archive: Archive, ref: str) -> tuple[str, str]:
    """Record a run of ``ref``; its document's object id and the output it holds."""
    result = generate(archive, ref, PROMPT, GenerationParams(max_new_tokens=6, device="cpu"))
    run_id = record_run(archive, result)
    with archive.catalog.session() as s:
        oid = s.scalar(select(RunRecord.object_id).where(RunRecord.id == run_id))
    assert oid is not None and result.text
    return oid, result.text


@pytest.fixture(scope="module")
def site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    base = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(base / "home")
    runs = {}
    for seed, name in enumerate(("open", "closed", "secret"), start=1):
        archive.push(_gpt2(base / name, seed), f"acme/{name}:v1")
        runs[name] = _run_document(archive, f"acme/{name}:v1")
    set_policy(archive, "acme/closed", "gated", reason="accept the licence first")
    set_policy(archive, "acme/secret", "restricted", reason="research only")
    tokens = {
        "admin": create_token(archive, "admin", "root").token,
        "alice": create_token(archive, "read", "alice").token,
        "bob": create_token(archive, "read", "bob").token,
    }
    grant(archive, "acme/closed", "alice", reason="accepted the licence")
    with serve(archive) as url:
        yield {"url": url, "archive": archive, "tokens": tokens, "runs": runs}
    archive.close()


def _client(site: dict[str, Any], who: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {site['tokens'][who]}"} if who else {}
    return httpx.Client(base_url=site["url"], headers=headers)


# who reads which run document: as who reads which snapshot's weights
READS = {
    None: {"open"},
    "bob": {"open"},
    "alice": {"open", "closed"},  # her grant opens the gated model, not the restricted one
    "admin": {"open", "closed", "secret"},
}


@pytest.mark.parametrize("who", list(READS))
def test_a_run_document_is_served_only_to_who_may_read_its_snapshots_weights(
    site: dict[str, Any], who: str | None
) -> None:
    with _client(site, who) as web:
        for name, (oid, output) in site["runs"].items():
            stored = site["archive"].store.get_stored(ObjectId(oid))
            answer = web.get(f"/v1/objects/{oid}")
            revalidated = web.get(f"/v1/objects/{oid}", headers={"If-None-Match": f'"{oid}"'})
            if name in READS[who]:
                assert answer.status_code == 200 and answer.content == stored, (who, name)
                assert revalidated.status_code == 304
                continue
            assert answer.status_code == 403 and answer.headers["X-Error-Code"] == "GatedRepo", (who, name)
            assert revalidated.status_code == 403  # a 304 would confirm what a cache kept
            assert web.head(f"/v1/objects/{oid}").status_code in (403, 405)
            assert (
                stored[:16] not in answer.content and output not in answer.text and PROMPT not in answer.text
            )


@pytest.mark.parametrize("who", list(READS))
def test_a_batch_refuses_the_run_documents_a_single_download_refuses(
    site: dict[str, Any], who: str | None
) -> None:
    ids = [oid for oid, _output in site["runs"].values()]
    with _client(site, who) as web:
        answer = web.post("/v1/objects/batch", json={"ids": ids})
    assert answer.status_code == 200
    kinds = {oid: kind for oid, kind, _payload in batch_frames(answer.content)}
    expected = {
        oid: batch.OBJECT if name in READS[who] else batch.REFUSED for name, (oid, _o) in site["runs"].items()
    }
    assert kinds == expected
    for oid, kind, payload in batch_frames(answer.content):
        if kind != batch.OBJECT:
            assert site["archive"].store.get_stored(ObjectId(oid))[:16] not in payload


def test_no_snapshot_offer_names_a_run_document(site: dict[str, Any]) -> None:
    """pull --remote and mirror sync fetch what an offer and its manifest name: a run document is neither."""
    with _client(site, "admin") as web:
        for name, (oid, _output) in site["runs"].items():
            offer = web.get(f"/v1/transfer/snapshots/acme/{name}/v1")
            assert offer.status_code == 200 and oid not in offer.text


def test_the_manifest_and_config_of_a_restricted_model_with_runs_stay_public(site: dict[str, Any]) -> None:
    archive = site["archive"]
    _ref, snap = archive.resolve("acme/secret:v1")
    config = next(f for f in archive.manifest(snap).files if f.path == "config.json")
    with _client(site, None) as web:
        assert web.get(f"/v1/objects/{snap.digest.hex}").status_code == 200
        assert web.get(f"/v1/objects/{config.parts[0].chunks[0].id}").status_code == 200


def test_a_run_of_a_model_made_restricted_afterwards_is_withheld(
    site: dict[str, Any], tmp_path: Path
) -> None:
    """The probe's order: the run was recorded while the model was public, then the model was restricted."""
    archive = site["archive"]
    archive.push(_gpt2(tmp_path / "later", 7), "acme/later:v1")
    oid, _output = _run_document(archive, "acme/later:v1")
    with _client(site, None) as web:
        assert web.get(f"/v1/objects/{oid}").status_code == 200
        set_policy(archive, "acme/later", "restricted", reason="withdrawn from public use")
        assert web.get(f"/v1/objects/{oid}").status_code == 403


def test_a_run_of_a_gated_model_is_filed_under_it_though_a_public_model_holds_the_same_bytes(
    site: dict[str, Any], tmp_path: Path
) -> None:
    """Both models have the snapshot id; the run was filed under whichever row came first (the public model's),
    so `runs acme/twin-gated:v1` did not list it and the server judged it by the public model's policy."""
    archive = site["archive"]
    folder = _gpt2(tmp_path / "twin", 11)
    archive.push(folder, "acme/twin-open:v1")
    archive.push(folder, "acme/twin-gated:v1")
    set_policy(archive, "acme/twin-gated", "gated", reason="accept the licence first")
    oid, _output = _run_document(archive, "acme/twin-gated:v1")
    assert [r["ref"] for r in list_runs(archive, "acme/twin-gated:v1")] == ["acme/twin-gated:v1"]
    assert list_runs(archive, "acme/twin-open:v1") == []
    with _client(site, None) as web:
        assert web.get(f"/v1/objects/{oid}").status_code == 403
    with _client(site, "admin") as web:
        assert web.get(f"/v1/objects/{oid}").status_code == 200
