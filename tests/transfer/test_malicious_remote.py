"""A remote (here a rewriting proxy in front of a real `modelarc serve`) may answer anything; the puller records only
what it asked for and what it verified.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hostilekit import RewritingProxy, object_files, serve_proxy
from modelfactory import finetune, tiny_tensors, write_model
from transferkit import Home, Server, files_of, make_home, trusted_by_server

from modelarc.archive.provenance.withdrawal import withdraw


@pytest.fixture
def alice(server: Server, tmp_path: Path) -> Home:
    """A pusher the server trusts, who has pushed acme/m:v1 and a different acme/m:v2 to it."""
    home = make_home(tmp_path, "alice")
    trusted_by_server(server, home)
    home("remote", "add", "origin", server.url, "--token", server.push_token)
    home("push", write_model(tmp_path / "m1"), "acme/m:v1", "--remote", "origin")
    tuned = finetune(tiny_tensors(), ["model.layers.0.mlp.weight"])
    home("push", write_model(tmp_path / "m2", tuned), "acme/m:v2", "--remote", "origin")
    return home


def _bob(tmp_path: Path, url: str, alice: Home) -> Home:
    """A puller who trusts the server's key and alice's key, with a model of his own at victim/prod:v1."""
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "evil", url)
    bob("keys", "import", _export_key(alice, tmp_path), "--label", "alice")
    bob("push", write_model(tmp_path / "own", tiny_tensors(seed=7)), "victim/prod:v1")
    return bob


def _export_key(home: Home, tmp_path: Path) -> Path:
    pem = tmp_path / f"{home.path.name}.pem"
    pem.write_text(home("keys", "export").stdout)
    return pem


def _digest(home: Home, ref: str) -> str:
    doc = home.json("show", ref)
    assert isinstance(doc, dict)
    return str(doc["snapshot"])


def test_an_offer_that_names_another_ref_cannot_move_the_pullers_other_tags(
    server: Server, alice: Home, tmp_path: Path
) -> None:
    def retarget(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if "/v1/transfer/snapshots/" in path and status == 200:
            doc = json.loads(body)
            doc["ref"] = "victim/prod:v1"
            body = json.dumps(doc).encode()
        return status, headers, body

    with serve_proxy(RewritingProxy(server.url, rewrite=retarget)) as url:
        bob = _bob(tmp_path, url, alice)
        own = _digest(bob, "victim/prod:v1")
        bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "evil")
    assert _digest(bob, "victim/prod:v1") == own  # untouched
    assert _digest(bob, "acme/m:v1") == _digest(alice, "acme/m:v1")  # recorded under the name asked for
    log = bob.json("log", "victim/prod")
    assert isinstance(log, dict) and len(log["tag_moves"]) == 1


def test_a_pull_by_digest_refuses_any_other_snapshot(server: Server, alice: Home, tmp_path: Path) -> None:
    v1, v2 = _digest(alice, "acme/m:v1"), _digest(alice, "acme/m:v2")
    with serve_proxy(RewritingProxy(server.url, route=lambda path: path.replace(v1, v2))) as url:
        bob = _bob(tmp_path, url, alice)
        before = object_files(bob.path / "store")
        result = bob("pull", f"acme/m@{v1}", tmp_path / "out", "--remote", "evil", ok=False)
    assert v1 in result.stderr and v2 in result.stderr
    assert not (tmp_path / "out").exists()
    assert object_files(bob.path / "store") == before  # not even the other manifest was kept
    bob("show", "acme/m:latest", ok=False)
    assert not bob.json("ls", "--name", "acme/m")


def test_a_refused_signature_moves_no_weights(server: Server, alice: Home, tmp_path: Path) -> None:
    bob = make_home(tmp_path, "bob")  # trusts the server's key, not alice's
    bob("remote", "add", "origin", server.url)
    result = bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "origin", ok=False)
    assert "signature" in result.stderr.lower()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with alice.archive() as a:
        _ref, snap = a.resolve("acme/m:v1")
        weights = {str(o) for o in a.manifest(snap).object_ids()}
    assert not weights & object_files(bob.path / "store")
    assert not bob.json("ls")


@pytest.mark.parametrize("lie", ["declared size", "content length"])
def test_an_object_body_is_judged_by_its_header_before_it_is_read(
    server: Server, alice: Home, tmp_path: Path, lie: str
) -> None:
    with alice.archive() as a:
        _ref, snap = a.resolve("acme/m:v1")
        manifest = a.manifest(snap)
    weight = (
        max((p for _f, p in manifest.tensors()), key=lambda p: p.length).chunks[0].id
    )  # not in bob's store

    def huge(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if path.endswith(f"/v1/objects/{weight}"):
            if lie == "declared size":  # the header claims 1 TiB of decoded bytes
                body = body[:8] + struct.pack("<Q", 1 << 40) + body[16:]
            else:  # the header is honest, the body claims 1 TiB and sends a few bytes
                headers = {**headers, "Content-Length": str(1 << 40)}
        return status, headers, body

    with serve_proxy(RewritingProxy(server.url, rewrite=huge)) as url:
        bob = _bob(tmp_path, url, alice)
        result = bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "evil", ok=False)
    assert weight in result.stderr
    assert not bob.json("ls", "--name", "acme/m")


def test_a_withdrawn_snapshot_does_not_pull_over_http_even_when_its_weights_are_shared(
    server: Server, tmp_path: Path
) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    model = write_model(tmp_path / "m")
    alice("push", model, "acme/m:v1", "--remote", "origin")
    (model / "NOTES.md").write_text("same weights, one more file\n")
    alice("push", model, "acme/m:v2", "--remote", "origin")  # shares every weight with v1
    withdraw(server.archive, "acme/m:v1", "license revoked")
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url)
    bob("keys", "import", _export_key(alice, tmp_path), "--label", "alice")
    result = bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "origin", ok=False)
    assert "withdrawn" in result.stderr
    assert not (tmp_path / "out").exists()
    bob("pull", "acme/m:v2", tmp_path / "out2", "--remote", "origin")  # the live one still pulls
    assert files_of(tmp_path / "out2") == files_of(model)
