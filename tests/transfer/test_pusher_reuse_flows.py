"""Honest pushes that the reuse rule (test_pusher_may_reuse.py) must not break, and the order of its checks.

From a review of that rule: a push of a fine-tune of a public fine-tune whose own base is gated, and a tag moved to
a snapshot the model already holds, failed (the commit judged the server's own delta bases, which no non-admin
reads, and every object of a snapshot already recorded there); the content check ran before the reuse check, so a
pusher could make the server hash withheld bytes and echo the digest; a namespace-limited token stopped a whole
mirror sync at its first snapshot outside its namespaces; many ids broke one PostgreSQL query.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from finetunes import LIGHT, MEDIUM, write_family
from hostilekit import HostilePusher
from modelfactory import write_model
from transferkit import Home, Server, make_home, trusted_by_server

from modelarc.archive.access import set_policy
from modelarc.archive.remote.receive import reusable_objects
from modelarc.archive.repository import Archive
from modelarc.archive.tokens import create_token, token_principal


def _home(server: Server, tmp_path: Path, name: str, token: str | None = None) -> Home:
    home = make_home(tmp_path, name)
    trusted_by_server(server, home)
    home("remote", "add", "origin", server.url, "--token", token or server.push_token)
    return home


def _weights(seed: int, n: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layers.{i}.weight": rng.standard_normal((32, 32)).astype(np.float32) for i in range(n)}


def test_a_fine_tune_of_a_public_fine_tune_of_a_gated_base_pushes(server: Server, tmp_path: Path) -> None:
    made = write_family(tmp_path / "fam", strengths=(LIGHT, MEDIUM), dtypes=("F32",))
    base, light, medium = (made.folder(k, "F32") for k in ("base", "light", "medium"))
    alice = _home(server, tmp_path, "alice")
    alice("push", base, "acme/base:v1")
    alice("push", light, "acme/ft:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    alice("push", "acme/base:v1", "--remote", "origin")
    alice("push", "acme/ft:v1", "--remote", "origin")
    set_policy(server.archive, "acme/base", "gated", reason="the authors' licence")  # acme/ft stays public
    bob = _home(server, tmp_path, "bob")
    with alice.archive() as a:
        (tmp_path / "alice.pem").write_bytes(a.public_key_pem())
    bob("keys", "import", tmp_path / "alice.pem", "--label", "alice")
    bob("pull", "acme/ft:v1", "--remote", "origin")
    bob("push", medium, "bob/ft:v2", "--parent", "acme/ft:v1", "--relation", "finetune")
    bob("push", "bob/ft:v2", "--remote", "origin")
    server.archive.verify("bob/ft:v2")
    bob("tag", "acme/ft:v1", "stable")
    bob("push", "acme/ft:stable", "--remote", "origin")  # a tag moved to a snapshot acme/ft holds
    _r, snap = server.archive.resolve("acme/ft:stable")
    assert snap.digest == server.archive.resolve("acme/ft:v1")[1].digest


def test_a_tag_moved_in_a_gated_model_sends_no_weights(server: Server, tmp_path: Path) -> None:
    alice = _home(server, tmp_path, "alice")
    alice("push", write_model(tmp_path / "v1", tensors=_weights(1)), "acme/m:v1")
    alice("push", "acme/m:v1", "--remote", "origin")
    set_policy(server.archive, "acme/m", "gated", reason="licence")
    alice("tag", "acme/m:v1", "stable")
    result = alice.json("push", "acme/m:stable", "--remote", "origin")
    assert result["objects_sent"] == 0, result


def test_the_reuse_check_comes_before_the_content_check(server: Server, tmp_path: Path) -> None:
    """A blob naming a gated file's chunks with a made-up sha256: refused as not this token's to reuse (409), not
    rebuilt and hashed for the pusher (a 422 naming the real digest of withheld bytes)."""
    server.archive.push(write_model(tmp_path / "s", tensors=_weights(2)), "acme/secret:v1")
    set_policy(server.archive, "acme/secret", "gated", reason="licence")
    _r, snap = server.archive.resolve("acme/secret:v1")
    weights = next(f for f in server.archive.manifest(snap).files if f.path.endswith(".safetensors"))
    chunks = [c for p in weights.parts for c in p.chunks]
    total = sum(c.length for c in chunks)
    alice = _home(server, tmp_path, "alice")
    alice("push", write_model(tmp_path / "own", tensors=_weights(3)), "alice/own:v1")
    pusher = HostilePusher(Archive.open(alice.path), server.url, server.push_token)
    blob = {
        "path": "leak.bin",
        "size": total,
        "sha256": "0" * 64,
        "kind": "blob",
        "parts": [
            {
                "kind": "blob",
                "offset": 0,
                "length": total,
                "chunks": [{"id": str(c.id), "length": c.length} for c in chunks],
            }
        ],
    }
    offer = pusher.offer("alice/own:v1", {"format": "modelarc.manifest", "version": 1, "files": [blob]})
    offer["ref"] = "alice/leak:v1"
    answer = pusher.commit(offer)
    assert answer.status_code == 409, answer.text
    assert weights.sha256 not in answer.text


def test_a_mirror_sync_goes_on_past_a_snapshot_outside_the_tokens_namespaces(
    server: Server, tmp_path: Path
) -> None:
    token = create_token(server.archive, "push", "ns-acme", namespaces=["acme"]).token
    alice = _home(server, tmp_path, "alice", token)
    alice("push", write_model(tmp_path / "o", tensors=_weights(4)), "other/b:v1")  # synced first: older
    alice("push", write_model(tmp_path / "a", tensors=_weights(5)), "acme/a:v1")
    alice("mirror", "add", "srv", "remote:origin")
    result = alice("mirror", "sync", ok=False)
    assert "other/b" in result.output and "Traceback" not in result.output
    server.archive.verify("acme/a:v1")  # the snapshot inside its namespace got there all the same


def test_reuse_is_judged_for_more_ids_than_one_query_may_hold(server: Server) -> None:
    """PostgreSQL takes at most 65,535 parameters in one statement; a model of ~600 GB has ~75,000 objects."""
    principal = token_principal(server.archive, server.push_token)
    assert principal is not None
    ids = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(70_000)]
    assert reusable_objects(server.archive, ids, principal, principal.actor) == set()
