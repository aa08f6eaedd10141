"""Weights in any format, over HTTP, on SQLite and PostgreSQL: a gated model's weight files that no list of weight
formats named (ONNX external data, rust-bert, Paddle, MXNet, Darknet, ...) go to no anonymous client, by the Hub
resolve route, ``/v1/objects`` or huggingface_hub; a withdrawn snapshot's are freed from the store, and what it
still holds of its weight files (safetensors headers) is not served either. Public metadata (configs, tokenizers,
the model card, the licence) stays public in both (archive/weights.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from liveserver import serve
from modelfactory import tiny_tensors, write_model

from modelarc.archive.access import set_policy
from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.provenance.withdrawal import withdraw
from modelarc.archive.repository import Archive
from modelarc.archive.tokens import create_token
from modelarc.storage import ObjectId

# one file per weight-format class an older suffix list (of access policies, of withdrawal, or both) missed
WEIGHT_FILES = (
    "onnx/model.onnx_data",
    "onnx/model.onnx.data",
    "rust_model.ot",
    "model.pdiparams",
    "model.params",
    "model_best.pth.tar",
    "model.pt2",
    "model.pte",
    "tf_model.hdf5",
    "skops-model.skops",
    "yolov4.weights",
    "model.trt",
    "model.pkl",
    "embeddings.npy",
    "weights.unknown-format",
)
PUBLIC_FILES = ("config.json", "tokenizer.json", "tokenizer.model", "README.md", "LICENSE", "chat_template.jinja")


def _files(model: str) -> dict[str, bytes]:
    """Bytes of each extra file, distinct per model so that no object is shared between the two."""
    paths = WEIGHT_FILES + ("tokenizer.model", "README.md", "LICENSE", "chat_template.jinja")
    return {p: f"{model} {p} bytes ".encode() * 50 for p in paths}


def _chunk(manifest: SnapshotManifest, path: str, part: int = 0) -> str:
    entry = next(f for f in manifest.files if f.path == path)
    return entry.parts[part].chunks[0].id


@pytest.fixture(scope="module")
def site(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """acme/gated:v1 (gated) and acme/gone:v1 (public, then withdrawn), each with a file of every weight format."""
    base = tmp_path_factory.mktemp("formats")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MODELARC_DATABASE_URL", module_database_url)
        archive, _ = Archive.init(base / "home")
    for i, name in enumerate(("gated", "gone")):
        folder = write_model(base / name, tiny_tensors(seed=11 + i), extra_files=_files(name))
        archive.push(folder, f"acme/{name}:v1")
    set_policy(archive, "acme/gated", "gated", reason="licence requires acceptance")
    manifests = {name: archive.manifest(archive.resolve(f"acme/{name}:v1")[1]) for name in ("gated", "gone")}
    gone_id = archive.resolve("acme/gone:v1")[1].digest.hex
    withdrawn = withdraw(archive, "acme/gone:v1", "takedown request")
    admin = create_token(archive, "admin", "root").token
    with serve(archive) as url:
        yield {
            "url": url,
            "archive": archive,
            "src": base,
            "manifests": manifests,
            "gone_id": gone_id,
            "withdrawn": withdrawn,
            "admin": {"Authorization": f"Bearer {admin}"},
        }
    archive.close()


@pytest.mark.parametrize("path", WEIGHT_FILES)
def test_gated_weights_of_any_format_go_to_no_anonymous_client(site: dict[str, Any], path: str) -> None:
    secret = (site["src"] / "gated" / path).read_bytes()
    oid = _chunk(site["manifests"]["gated"], path)
    with httpx.Client(base_url=site["url"]) as web:
        for method in ("GET", "HEAD"):
            answer = web.request(method, f"/acme/gated/resolve/v1/{path}")
            assert answer.status_code == 403 and answer.headers["X-Error-Code"] == "GatedRepo", method
            assert secret[:32] not in answer.content
        answer = web.get(f"/v1/objects/{oid}")
        assert answer.status_code == 403 and secret[:32] not in answer.content
        assert web.get(f"/acme/gated/resolve/v1/{path}", headers=site["admin"]).content == secret


def test_public_metadata_of_a_gated_model_stays_public(site: dict[str, Any]) -> None:
    manifest = site["manifests"]["gated"]
    with httpx.Client(base_url=site["url"]) as web:
        for path in PUBLIC_FILES:
            answer = web.get(f"/acme/gated/resolve/v1/{path}")
            assert answer.status_code == 200, path
            assert answer.content == (site["src"] / "gated" / path).read_bytes()
            assert web.get(f"/v1/objects/{_chunk(manifest, path)}").status_code == 200, path


def test_huggingface_hub_gets_a_gated_error_for_onnx_external_data(site: dict[str, Any], tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import GatedRepoError

    with pytest.raises(GatedRepoError):
        hf_hub_download(
            "acme/gated", "onnx/model.onnx_data", revision="v1", endpoint=site["url"], token=False, cache_dir=tmp_path
        )
    got = hf_hub_download(
        "acme/gated", "tokenizer.model", revision="v1", endpoint=site["url"], token=False, cache_dir=tmp_path
    )
    assert Path(got).read_bytes() == (site["src"] / "gated" / "tokenizer.model").read_bytes()


@pytest.mark.parametrize("path", WEIGHT_FILES)
def test_a_withdrawal_frees_weights_of_any_format(site: dict[str, Any], path: str) -> None:
    oid = _chunk(site["manifests"]["gone"], path)
    assert not site["archive"].store.has(ObjectId(oid))
    with httpx.Client(base_url=site["url"]) as web:
        assert web.get(f"/v1/objects/{oid}").status_code == 404
        assert web.get(f"/v1/objects/{oid}", headers=site["admin"]).status_code == 404


def test_a_withdrawn_snapshot_serves_its_manifest_and_public_files_but_no_weight_chunk(site: dict[str, Any]) -> None:
    manifest = site["manifests"]["gone"]
    header = _chunk(manifest, "model.safetensors", 0)  # kept in the store (``show`` lists the tensors from it)
    assert site["archive"].store.has(ObjectId(header))
    with httpx.Client(base_url=site["url"]) as web:
        assert web.get(f"/acme/gone/resolve/v1/{WEIGHT_FILES[0]}").status_code == 410
        assert web.get(f"/v1/objects/{site['gone_id']}").status_code == 200  # the manifest: public provenance
        for path in PUBLIC_FILES:
            answer = web.get(f"/v1/objects/{_chunk(manifest, path)}")
            assert answer.status_code == 200, path
            assert answer.headers["cache-control"].startswith("public")  # anyone, any cache (for an hour)
        answer = web.get(f"/v1/objects/{header}")
        assert answer.status_code == 403 and "public" not in answer.headers.get("cache-control", "")
        assert web.get(f"/v1/objects/{header}", headers=site["admin"]).status_code == 200


def test_a_withdrawal_keeps_only_the_weights_another_snapshot_uses(site: dict[str, Any]) -> None:
    withdrawn, store = site["withdrawn"], site["archive"].store
    gone, gated = site["manifests"]["gone"], site["manifests"]["gated"]
    released = {c.id for f in gone.files if f.path not in PUBLIC_FILES for p in f.parts if p.kind != "header"
                for c in p.chunks}  # fmt: skip
    kept = {oid for oid in released if store.has(ObjectId(oid))}
    assert withdrawn.objects_released == len(released) > len(WEIGHT_FILES)
    assert withdrawn.objects_deleted == len(released - kept)
    assert kept <= gated.object_ids()  # tensors both models have (norms, biases): the only ones that stay
