"""`pull REF DEST --remote` checks what a pull without a folder checks, before anything is recorded: each
safetensors/GGUF file's own header against the manifest's tensor entries (restore checks the header it writes),
training-data manifests (fetched with the manifest), and the offer's provenance (before any object moves); and a
pull that fails leaves no temp file of its own in the folder.

The remote is a rewriting proxy in front of a real `modelarc serve` (tests/hostilekit.py), the puller bob trusts
alice, who signs whatever manifest she likes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest
from hostilekit import RewritingProxy, object_files, rewriting_offer, serve_proxy
from modelfactory import tiny_tensors, write_model
from test_malicious_remote import _bob
from transferkit import Home, Server, files_of, make_home, trusted_by_server

from modelarc.archive.manifest import canonical_json
from modelarc.archive.signing import keys as keyring
from modelarc.archive.signing.bundles import FileDigest, sign_snapshot

Lie = Callable[[dict[str, Any]], None]


@pytest.fixture
def alice(server: Server, tmp_path: Path) -> Home:
    """A pusher the server trusts (as in test_malicious_remote)."""
    home = make_home(tmp_path, "alice")
    trusted_by_server(server, home)
    home("remote", "add", "origin", server.url, "--token", server.push_token)
    return home


def _write_gguf(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(folder / "model.gguf"), "llama")
    w.add_block_count(2)
    rng = np.random.default_rng(5)
    for name in ("blk.0.attn_q.weight", "blk.0.ffn_up.weight", "output.weight"):
        w.add_tensor(name, rng.standard_normal((16, 16)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return folder


def _retype_a_safetensors_tensor(doc: dict[str, Any]) -> None:
    """An F32 tensor of the file's header restated as a made-up F64 tensor of the same byte length."""
    f = next(f for f in doc["files"] if f["kind"] == "safetensors")
    part = next(p for p in f["parts"] if p["kind"] == "tensor" and p["dtype"] == "F32")
    part.update(name="lm_head.weight", dtype="F64", shape=[part["length"] // 8])


def _rename_a_gguf_tensor(doc: dict[str, Any]) -> None:
    f = next(f for f in doc["files"] if f["kind"] == "gguf")
    next(p for p in f["parts"] if p["kind"] == "tensor")["name"] = "made.up.weight"


def _forged(alice: Home, ref: str, lie: Lie) -> tuple[str, str, dict[str, bytes]]:
    """``ref``'s manifest changed by ``lie`` and signed by alice (files and sha256 untouched): the manifest's id, the
    bundle's id, and both objects as stored, for the proxy to serve (the server never had them)."""
    with alice.archive() as a:
        _ref, snap = a.resolve(ref)
        doc = a.manifest(snap).to_json()
        lie(doc)
        manifest_id = a.store.put(canonical_json(doc)).id
        key = keyring.load_private_key(a.settings.keys_path / "signing-key.pem")
        digests = [FileDigest(f["path"], f["sha256"]) for f in doc["files"]]
        bundle_id = a.store.put(sign_snapshot(digests, f"sha256:{manifest_id}", key, model_name=ref)).id
        stored = {str(oid): bytes(a.store.get_stored(oid)) for oid in (manifest_id, bundle_id)}
    return str(manifest_id), str(bundle_id), stored


def _serving_forgery(manifest_id: str, bundle_id: str, stored: dict[str, bytes]) -> RewritingProxy:
    """A remote that offers the forged snapshot for any ref and serves its manifest and bundle."""

    def rewrite(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> Any:
        if "/v1/transfer/snapshots/" in path and status == 200:
            doc = json.loads(body)
            doc.update(snapshot=f"sha256:{manifest_id}", signatures=[bundle_id])
            return status, headers, json.dumps(doc).encode()
        for oid, blob in stored.items():
            if path.endswith(f"/v1/objects/{oid}"):
                return 200, {"Content-Type": "application/octet-stream"}, blob
        return status, headers, body

    return RewritingProxy("", rewrite=rewrite)


def _partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if "modelarc-partial" in p.name] if folder.exists() else []


@pytest.mark.parametrize("kind", ["safetensors", "gguf"])
@pytest.mark.parametrize("into", ["folder", "archive only"])
def test_a_signed_manifest_whose_tensor_entries_lie_about_the_header_is_refused(
    server: Server, alice: Home, tmp_path: Path, kind: str, into: str
) -> None:
    source = write_model(tmp_path / "m") if kind == "safetensors" else _write_gguf(tmp_path / "m")
    alice("push", source, "acme/m:v1", "--remote", "origin")
    lie = _retype_a_safetensors_tensor if kind == "safetensors" else _rename_a_gguf_tensor
    proxy = _serving_forgery(*_forged(alice, "acme/m:v1", lie))
    proxy.upstream = server.url
    out = tmp_path / "out"
    with serve_proxy(proxy) as url:
        bob = _bob(tmp_path, url, alice)
        before = bob.json("ls")
        where = [out] if into == "folder" else []
        result = bob("pull", "acme/m:v1", *where, "--remote", "evil", ok=False)
    assert "do not match the file's own header" in result.stderr and f"model.{kind}" in result.stderr
    assert bob.json("ls") == before  # nothing recorded
    bob("show", "acme/m:v1", ok=False)
    # the file whose header lies never took its name, and no temp file is left in its place
    assert not (out / f"model.{kind}").exists()
    assert not _partials(out)


def _safetensors_named_bin(doc: dict[str, Any]) -> None:
    """The safetensors file under a path no writer parses (``model.bin``), its kind, parts and bytes unchanged."""
    f = next(f for f in doc["files"] if f["kind"] == "safetensors")
    f["path"] = f["path"].removesuffix(".safetensors") + ".bin"


@pytest.mark.parametrize("into", ["folder", "archive only"])
def test_a_signed_manifest_giving_a_path_another_kind_is_refused_before_a_weight_moves(
    server: Server, alice: Home, tmp_path: Path, into: str
) -> None:
    """docs/FORMAT.md "Parts": the kind follows from the path. Every byte and the header check out; the client
    refuses the manifest as the server would, with the manifest and bundles, before any weight is asked for."""
    alice("push", write_model(tmp_path / "m"), "acme/m:v1", "--remote", "origin")
    manifest_id, bundle_id, stored = _forged(alice, "acme/m:v1", _safetensors_named_bin)
    proxy = _serving_forgery(manifest_id, bundle_id, stored)
    proxy.upstream = server.url
    out = tmp_path / "out"
    with serve_proxy(proxy) as url:
        bob = _bob(tmp_path, url, alice)
        before = bob.json("ls")
        where = [out] if into == "folder" else []
        result = bob("pull", "acme/m:v1", *where, "--remote", "evil", ok=False)
    assert "model.bin: the manifest gives it kind 'safetensors'" in result.stderr, result.stderr
    assert bob.json("ls") == before
    asked = [r for r in proxy.requests if "/v1/objects" in r]
    assert asked and all(r.endswith((manifest_id, bundle_id)) for r in asked), asked
    assert not out.exists() or not any(out.iterdir())


def test_an_honest_pull_into_a_folder_still_records_its_tensors(
    server: Server, alice: Home, tmp_path: Path
) -> None:
    """The header check passes every honest file, GGUF and safetensors alike."""
    alice("push", write_model(tmp_path / "m"), "acme/m:v1", "--remote", "origin")
    alice("push", _write_gguf(tmp_path / "g"), "acme/g:v1", "--remote", "origin")
    bob = _bob(tmp_path, server.url, alice)
    for name, source in (("m", tmp_path / "m"), ("g", tmp_path / "g")):
        bob("pull", f"acme/{name}:v1", tmp_path / f"out-{name}", "--remote", "evil")
        assert files_of(tmp_path / f"out-{name}") == files_of(source)
        bob("verify", f"acme/{name}:v1")


def test_a_pull_into_a_folder_brings_the_training_data_manifests(
    server: Server, alice: Home, tmp_path: Path
) -> None:
    data = tmp_path / "data.yaml"
    data.write_text("version: 1\ndatasets:\n  - {name: the-pile, version: '1.0', role: pretrain}\n")
    source = write_model(tmp_path / "m")
    alice("push", source, "acme/m:v1", "--data", data, "--remote", "origin")
    bob = make_home(tmp_path, "bob")  # an honest server, and a puller who trusts its key and alice's
    bob("remote", "add", "origin", server.url)
    with alice.archive() as a:
        (tmp_path / "alice.pem").write_bytes(a.public_key_pem())
    bob("keys", "import", tmp_path / "alice.pem", "--label", "alice")
    bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "origin")
    assert files_of(tmp_path / "out") == files_of(source)
    shown = bob.json("show", "acme/m:v1")
    assert isinstance(shown, dict)
    assert [(d["name"], d["role"]) for d in shown["datasets"]] == [("the-pile", "pretrain")]
    bob("verify", "acme/m:v1")
    bob("fsck")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cutoff", "2023-13-45", "bad date in provenance"),
        ("release_date", "yesterday", "bad date in provenance"),
        ("cutoff_precision", "century", "cutoff_precision must be"),
    ],
)
def test_bad_provenance_in_the_offer_is_refused_before_any_object_moves(
    server: Server, alice: Home, tmp_path: Path, field: str, value: str, message: str
) -> None:
    alice("push", write_model(tmp_path / "m"), "acme/m:v1", "--cutoff", "2023-04", "--remote", "origin")
    proxy = RewritingProxy(
        server.url, rewrite=rewriting_offer(lambda doc: doc["provenance"].update({field: value}))
    )
    with serve_proxy(proxy) as url:
        bob = _bob(tmp_path, url, alice)
        before = object_files(bob.path / "store")
        result = bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "evil", ok=False)
    assert message in result.stderr
    assert not [r for r in proxy.requests if "/v1/objects" in r]  # not even the manifest was asked for
    assert object_files(bob.path / "store") == before
    assert not (tmp_path / "out").exists()
    bob("show", "acme/m:v1", ok=False)


def test_a_bad_training_data_manifest_is_refused_before_any_weight_moves(
    server: Server, alice: Home, tmp_path: Path
) -> None:
    alice("push", write_model(tmp_path / "m"), "acme/m:v1", "--remote", "origin")
    with alice.archive() as a:
        _ref, snap = a.resolve("acme/m:v1")
        manifest = a.manifest(snap)
    config = next(f for f in manifest.files if f.path == "config.json").parts[0].chunks[0].id
    weights = {
        str(c.id) for f in manifest.files if f.kind == "safetensors" for p in f.parts for c in p.chunks
    }
    # the remote names config.json's object as a training-data manifest: it is not one
    proxy = RewritingProxy(server.url, rewrite=rewriting_offer(lambda doc: doc.update(data=[str(config)])))
    with serve_proxy(proxy) as url:
        bob = _bob(tmp_path, url, alice)
        before = object_files(bob.path / "store")
        result = bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "evil", ok=False)
    assert f"training-data manifest {config}" in result.stderr
    assert not weights & (object_files(bob.path / "store") - before)
    assert not [r for r in proxy.requests if "/v1/objects/batch" in r or any(w in r for w in weights)]
    assert not (tmp_path / "out").exists()
    bob("show", "acme/m:v1", ok=False)


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, b"interrupted"), (signal.SIGTERM, 143, b"terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_an_interrupted_pull_leaves_no_temp_file_in_the_folder(
    server: Server, alice: Home, tmp_path: Path, signum: int, code: int, said: bytes
) -> None:
    """Ctrl-C while the weights are being written: the CLI says nothing partial was recorded, and no
    ``.modelarc-partial-*`` file is left in the folder (files already complete and verified may stay)."""
    alice(
        "push",
        write_model(tmp_path / "m", tiny_tensors(layers=12, hidden=256)),
        "acme/m:v1",
        "--remote",
        "origin",
    )
    with alice.archive() as a:
        _ref, snap = a.resolve("acme/m:v1")
        weights = next(f for f in a.manifest(snap).files if f.kind == "safetensors")
    last = str([c for p in weights.parts for c in p.chunks][-1].id)

    def slow_last_weight(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> Any:
        if path.endswith("/v1/objects/batch"):
            return 405, {}, b""  # one object a request, so that one of them can be held back
        if path.endswith(last):
            time.sleep(3)  # the pull is interrupted while it waits for this one
        return status, headers, body

    out = tmp_path / "out"
    with serve_proxy(RewritingProxy(server.url, rewrite=slow_last_weight)) as url:
        bob = _bob(tmp_path, url, alice)
        before = bob.json("ls")
        pull = [sys.executable, "-m", "modelarc.cli.main", "pull", "acme/m:v1", str(out), "--remote", "evil"]
        proc = subprocess.Popen(
            [*pull, "--no-progress"],
            env={**os.environ, **bob.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while not _partials(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _partials(out), "the pull never began writing the weights"
        proc.send_signal(signum)
        _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code and said in stderr, stderr
    assert not _partials(out)
    assert not (out / "model.safetensors").exists()
    assert bob.json("ls") == before
