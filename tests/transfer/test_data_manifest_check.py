"""A training-data manifest an offer names is validated by ``POST /v1/transfer/check`` too, before any weight moves,
and its refusal is a 422 (``DataManifestInvalid``), as docs/FORMAT.md gives a failed receiver check.

Found by probing the server (finding 7): check did not read the offer's data manifests, so a pusher was told
``missing: []`` (or sent every weight), and only commit refused the manifest, with a 400 ``BadRequest``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hostilekit import HostilePusher
from modelfactory import tiny_tensors, write_model
from transferkit import Server, make_home, trusted_by_server

from modelarc.archive.remote.offers import offer_for
from modelarc.archive.repository import Archive
from modelarc.storage import ObjectId

VALID = b"version: 1\ndatasets:\n  - {name: the-pile, version: '1.0', role: pretrain}\n"
NO_ROLE = b"version: 1\ndatasets:\n  - name: x\n"  # every dataset needs a role


def _pusher_with_offer(server: Server, tmp_path: Path, data: bytes) -> tuple[HostilePusher, dict[str, Any], set[str]]:
    """alice's own snapshot, its manifest and bundles uploaded (no weight), offered with ``data`` as its one data
    manifest (uploaded too, as the client sends it with the bundles); the ids of its weight objects."""
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("push", write_model(tmp_path / "own", tiny_tensors(seed=8)), "alice/own:v1")
    pusher = HostilePusher(Archive.open(alice.path), server.url, server.push_token)
    offer, manifest = offer_for(pusher.archive, "alice/own:v1")
    for oid in [offer.snapshot.hex, *offer.signatures]:
        assert pusher.upload(oid).status_code in (200, 201)
    doc = offer.to_json()
    doc["data"] = [pusher.put_bytes(data)]
    weights = {str(c.id) for f in manifest.files for p in f.parts for c in p.chunks}
    return pusher, doc, weights - {str(ObjectId(offer.snapshot.hex))}


def test_check_refuses_an_invalid_data_manifest_before_any_weight_moves(server: Server, tmp_path: Path) -> None:
    pusher, doc, weights = _pusher_with_offer(server, tmp_path, NO_ROLE)
    check = pusher.http.post("/v1/transfer/check", json=doc)
    assert check.status_code == 422, check.text
    assert check.headers["x-error-code"] == "DataManifestInvalid"
    assert f"training-data manifest {doc['data'][0]}" in check.json()["detail"]
    assert not any(server.archive.store.has(ObjectId(w)) for w in weights)  # nothing but the head was sent
    # the commit says the same, with every weight uploaded
    for oid in sorted(weights):
        assert pusher.upload(oid).status_code in (200, 201)
    commit = pusher.http.post("/v1/transfer/commit", json=doc)
    assert commit.status_code == 422 and commit.headers["x-error-code"] == "DataManifestInvalid", commit.text
    assert "alice/own" not in pusher.http.get("/v1/models").text  # nothing was recorded


def test_check_accepts_a_valid_data_manifest_and_lists_the_weights(server: Server, tmp_path: Path) -> None:
    pusher, doc, weights = _pusher_with_offer(server, tmp_path, VALID)
    check = pusher.http.post("/v1/transfer/check", json=doc)
    assert check.status_code == 200, check.text
    assert set(check.json()["missing"]) == weights  # the data manifest is here already: not asked for again
    for oid in sorted(weights):
        assert pusher.upload(oid).status_code in (200, 201)
    commit = pusher.http.post("/v1/transfer/commit", json=doc)
    assert commit.status_code == 201, commit.text
    assert [d.to_json()["name"] for d in server.archive.show("alice/own:v1").datasets] == ["the-pile"]
