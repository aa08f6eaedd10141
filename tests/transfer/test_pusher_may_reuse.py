"""A push token may build a snapshot only on objects it may read on the server, or has uploaded itself.

Object ids are public (every manifest lists them, and a snapshot offer is served to anyone), so "the server already
has these bytes" must never stand in for "the pusher has them". Otherwise a push token with no grant could commit a
gated snapshot's offer (or a one-chunk blob named by a gated chunk's id) under a new public model and make the
server hand the weights out. Also here: a withdrawal is not undone by a push, a `check` does not keep withdrawn
weights on disk, and a push never changes what is already recorded (policy, provenance) of a snapshot.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from hostilekit import HostilePusher
from modelfactory import write_model
from transferkit import Server, make_home, trusted_by_server

from modelarc.archive.access import set_policy
from modelarc.archive.provenance.withdrawal import withdraw
from modelarc.archive.repository import Archive
from modelarc.errors import NotFoundError
from modelarc.storage import ObjectId


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layers.{i}.weight": rng.standard_normal((32, 32)).astype(np.float32) for i in range(3)}


def _served(server: Server, tmp_path: Path, ref: str, seed: int, level: str | None) -> Path:
    """``ref`` pushed into the server's archive by its operator, with ``level`` as the model's policy."""
    folder = write_model(tmp_path / f"src-{seed}", tensors=_weights(seed))
    server.archive.push(folder, ref)
    if level is not None:
        set_policy(server.archive, ref.split(":")[0], level, reason="the authors' licence")
    return folder


def _weight_ids(archive: Archive, ref: str) -> list[str]:
    _ref, snap = archive.resolve(ref)
    manifest = archive.manifest(snap)
    return sorted(
        c.id for f in manifest.files if f.path.endswith(".safetensors") for p in f.parts for c in p.chunks
    )


def _anonymous(server: Server, path: str) -> httpx.Response:
    return httpx.get(server.url + path, timeout=30)


def _push_client(server: Server) -> httpx.Client:
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.push_token}"}, timeout=60
    )


@pytest.mark.parametrize("level", ["gated", "restricted"])
def test_a_public_offer_of_withheld_weights_cannot_be_committed_under_a_new_name(
    server: Server, tmp_path: Path, level: str
) -> None:
    _served(server, tmp_path, "acme/secret:v1", 1, level)
    weight = _weight_ids(server.archive, "acme/secret:v1")[-1]
    assert _anonymous(server, f"/v1/objects/{weight}").status_code == 403
    offer: dict[str, Any] = _anonymous(server, "/v1/transfer/snapshots/acme/secret/v1").json()  # public
    offer.pop("access", None)
    offer["ref"] = "mallory/leak:v1"
    with _push_client(server) as push:
        check = push.post("/v1/transfer/check", json=offer)
        assert check.status_code == 200, check.text
        assert weight in check.json()["missing"]  # present, but not this token's to reuse: send it
        answer = push.post("/v1/transfer/commit", json=offer)
    assert answer.status_code == 409, answer.text  # send those bytes (a pusher that has them can)
    assert weight in answer.json()["missing"]
    assert "may not read" in answer.json()["detail"]
    with pytest.raises(NotFoundError):
        server.archive.resolve("mallory/leak:v1")
    assert _anonymous(server, f"/v1/objects/{weight}").status_code == 403
    assert _anonymous(server, "/mallory/leak/resolve/v1/model.safetensors").status_code in (401, 403, 404)


def test_a_blob_named_by_a_gated_chunk_id_cannot_be_committed(server: Server, tmp_path: Path) -> None:
    """For a one-chunk blob the file's sha256 is the chunk's id: every number checks without the bytes."""
    _served(server, tmp_path, "acme/secret:v1", 2, "gated")
    weight = _weight_ids(server.archive, "acme/secret:v1")[0]
    length = server.archive.store.stat(ObjectId(weight)).raw_size
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)  # a pusher whose signatures the server accepts
    alice("push", write_model(tmp_path / "own", tensors=_weights(3)), "alice/own:v1")
    pusher = HostilePusher(Archive.open(alice.path), server.url, server.push_token)
    blob = {
        "path": "leak.bin",
        "size": length,
        "sha256": weight,
        "kind": "blob",
        "parts": [
            {"kind": "blob", "offset": 0, "length": length, "chunks": [{"id": weight, "length": length}]}
        ],
    }
    doc = {"format": "modelarc.manifest", "version": 1, "files": [blob]}
    offer = pusher.offer("alice/own:v1", doc)
    offer["ref"] = "alice/leak:v1"
    assert weight in pusher.http.post("/v1/transfer/check", json=offer).json()["missing"]
    answer = pusher.commit(offer)
    assert answer.status_code == 409, answer.text
    assert answer.json()["missing"] == [weight]
    with pytest.raises(NotFoundError):
        server.archive.resolve("alice/leak:v1")
    assert _anonymous(server, f"/v1/objects/{weight}").status_code == 403


def test_a_pusher_that_has_the_bytes_uploads_them_and_may_publish_them(
    server: Server, tmp_path: Path
) -> None:
    """Possession is what counts: the same files, pushed by someone who has them, go through the real client."""
    folder = _served(server, tmp_path, "acme/secret:v1", 4, "gated")
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    alice("push", folder, "alice/copy:v1")
    alice("push", "alice/copy:v1", "--remote", "origin")
    server.archive.verify("alice/copy:v1")
    weight = _weight_ids(server.archive, "alice/copy:v1")[0]
    assert _anonymous(server, f"/v1/objects/{weight}").status_code == 200  # alice's copy is public


def test_a_withdrawn_snapshot_cannot_be_pushed_back_and_check_does_not_keep_its_weights(
    server: Server, tmp_path: Path
) -> None:
    _served(server, tmp_path, "acme/old:v1", 5, None)
    offer: dict[str, Any] = _anonymous(server, "/v1/transfer/snapshots/acme/old/v1").json()
    with _push_client(server) as push:
        assert push.post("/v1/transfer/check", json=offer).json()["missing"] == []  # public: leased, reusable
        result = withdraw(server.archive, "acme/old:v1", "taken down")
        assert result.objects_deleted == result.objects_released > 0, result  # the check's leases kept none
        offer["ref"] = "mallory/revived:v1"
        answer = push.post("/v1/transfer/commit", json=offer)
    assert answer.status_code in (409, 410), (
        answer.text
    )  # the weights are gone, and the snapshot is withdrawn
    with pytest.raises(NotFoundError):
        server.archive.resolve("mallory/revived:v1")


def test_a_withdrawn_snapshot_is_refused_even_when_the_pusher_sends_every_byte(
    server: Server, tmp_path: Path
) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    alice("push", write_model(tmp_path / "m", tensors=_weights(6)), "acme/old:v1")
    alice("push", "acme/old:v1", "--remote", "origin")
    withdraw(server.archive, "acme/old:v1", "taken down")
    alice("push", tmp_path / "m", "alice/revived:v1")  # the same files: the same snapshot id
    result = alice("push", "alice/revived:v1", "--remote", "origin", ok=False)
    assert "withdrawn" in result.stderr, result.stderr
    with pytest.raises(NotFoundError):
        server.archive.resolve("alice/revived:v1")


def test_a_push_does_not_change_the_policy_of_a_snapshot_already_recorded(
    server: Server, tmp_path: Path
) -> None:
    _served(server, tmp_path, "acme/pub:v1", 7, None)
    offer: dict[str, Any] = _anonymous(server, "/v1/transfer/snapshots/acme/pub/v1").json()
    offer["access"] = {"level": "restricted", "until": None, "reason": "hijacked by a pusher"}
    with _push_client(server) as push:
        answer = push.post("/v1/transfer/commit", json=offer)
    assert answer.status_code == 200, answer.text
    assert answer.json()["new_snapshot"] is False
    served = _anonymous(server, "/acme/pub/resolve/v1/model.safetensors")
    assert served.status_code == 200, served.text
    source = (tmp_path / "src-7" / "model.safetensors").read_bytes()
    assert hashlib.sha256(served.content).hexdigest() == hashlib.sha256(source).hexdigest()


def test_a_push_restating_a_recorded_snapshots_provenance_is_refused(server: Server, tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", tensors=_weights(8))
    server.archive.push(folder, "acme/pub:v1")
    offer: dict[str, Any] = _anonymous(server, "/v1/transfer/snapshots/acme/pub/v1").json()
    offer["provenance"] = {**(offer.get("provenance") or {}), "license": "proprietary"}
    with _push_client(server) as push:
        answer = push.post("/v1/transfer/commit", json=offer)
    assert answer.status_code == 409, answer.text
    assert "--license" in answer.json()["detail"]
    _ref, snap = server.archive.resolve("acme/pub:v1")
    assert snap.license is None


def test_a_models_access_answer_lists_its_snapshots_own_policies(server: Server, tmp_path: Path) -> None:
    """Without the overrides, a restricted snapshot of a public model would look public at /v1/access."""
    _served(server, tmp_path, "acme/pub:v1", 9, None)
    set_policy(server.archive, "acme/pub", "restricted", reason="withheld for review", snapshot="v1")
    _ref, snap = server.archive.resolve("acme/pub:v1")
    doc = _anonymous(server, "/v1/access/acme/pub").json()
    assert doc["level"] == "public"
    assert [(o["snapshot"], o["level"], o["reason"]) for o in doc["snapshots"]] == [
        (snap.digest, "restricted", "withheld for review")
    ]
    assert "set_by" not in doc["snapshots"][0]


def test_an_admin_push_to_the_model_that_withdrew_the_snapshot_is_refused(
    server: Server, tmp_path: Path
) -> None:
    """An admin may push a withdrawn snapshot's files under another model (a new snapshot), but a push to the model
    that withdrew it used to move the tag onto the withdrawn snapshot and report success, while every pull of that
    tag failed and the next gc freed the weights sent: refused (410 Withdrawn) with nothing recorded."""
    from modelarc.archive.tokens import create_token

    admin = create_token(server.archive, "admin", "ci-admin").token
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", admin)
    alice("push", write_model(tmp_path / "m", tensors=_weights(8)), "acme/old:v1")
    alice("push", "acme/old:v1", "--remote", "origin")
    withdraw(server.archive, "acme/old:v1", "taken down")
    alice("tag", "acme/old:v1", "v2")
    result = alice("push", "acme/old:v2", "--remote", "origin", ok=False)
    assert result.exit_code == 10, result.output
    assert "withdrawn" in result.stderr and "taken down" in result.stderr, result.stderr
    with pytest.raises(NotFoundError):
        server.archive.resolve("acme/old:v2")
    alice("push", tmp_path / "m", "alice/kept:v1")
    alice("push", "alice/kept:v1", "--remote", "origin")  # another model: a new snapshot on the server
    server.archive.verify("alice/kept:v1")
