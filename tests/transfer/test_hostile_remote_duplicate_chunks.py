"""A snapshot that holds the same object twice (two tensors with the same bytes), pulled into a folder, must still
refuse an impostor sent for it, whichever of the two downloads carries it and by either route (the prefetch asks for
a repeated id once; the second occurrence is then fetched on its own): each download is hashed after it is written,
with its file, and kept only once that digest is its id (archive/remote/sync.py ``confirm``)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from hostilekit import RewritingProxy, batch_frames, object_files, pack_batch, serve_proxy
from modelfactory import tiny_tensors, write_model
from test_malicious_remote import _bob, _older_server
from transferkit import Home, Server, files_of, make_home, trusted_by_server

from modelarc.storage.objectformat import ObjectHeader


@pytest.fixture
def alice(server: Server, tmp_path: Path) -> Home:
    """A pusher the server trusts (as in test_malicious_remote)."""
    home = make_home(tmp_path, "alice")
    trusted_by_server(server, home)
    home("remote", "add", "origin", server.url, "--token", server.push_token)
    return home


def _duplicated(pusher: Home, tmp_path: Path) -> tuple[str, int]:
    """Push acme/d:v1, whose two tensors dup.a and dup.b hold the same random bytes: one object, twice."""
    tensors = tiny_tensors(seed=3)
    same = np.random.default_rng(99).standard_normal((64, 64)).astype(np.float32)
    tensors["dup.a"], tensors["dup.b"] = same, same.copy()
    pusher("push", write_model(tmp_path / "md", tensors), "acme/d:v1", "--remote", "origin")
    with pusher.archive() as a:
        _ref, snap = a.resolve("acme/d:v1")
        manifest = a.manifest(snap)
    parts = {p.name: p for _f, p in manifest.tensors()}
    assert parts["dup.a"].chunks[0].id == parts["dup.b"].chunks[0].id
    chunk = parts["dup.a"].chunks[0]
    return chunk.id, chunk.length


@pytest.mark.parametrize("route", ["batch", "one by one"])
@pytest.mark.parametrize("which", ["first", "second", "both"])
def test_an_impostor_for_a_repeated_object_is_refused_whichever_copy_carries_it(
    server: Server,
    alice: Home,
    tmp_path: Path,
    route: str,
    which: str,
) -> None:
    asked, length = _duplicated(alice, tmp_path)
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    impostor = ObjectHeader(codec_id=0, raw_length=length, params=b"").pack() + payload
    sent = {"n": 0}
    lock = threading.Lock()

    def lie_now() -> bool:
        with lock:
            sent["n"] += 1
            n = sent["n"]
        return which == "both" or (which == "first") == (n == 1)

    def swap(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if route == "one by one" and _older_server(path):
            return 405, {}, b""
        if path.endswith(f"/v1/objects/{asked}") and status == 200:
            if lie_now():
                return status, {**headers, "Content-Length": str(len(impostor))}, impostor
        if path.endswith("/v1/objects/batch") and status == 200:
            frames = []
            for oid, kind, data in batch_frames(body):
                if oid == asked and lie_now():
                    data = impostor
                frames.append((oid, kind, data, len(data)))
            body = pack_batch(frames)
        return status, headers, body

    with serve_proxy(RewritingProxy(server.url, rewrite=swap)) as url:
        bob = _bob(tmp_path, url, alice)
        result = bob("pull", "acme/d:v1", tmp_path / "out", "--remote", "evil", ok=False)
    assert sent["n"] >= 1, "the repeated object was never downloaded"
    assert "bad object" in result.stderr and asked in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    if asked in object_files(bob.path / "store"):  # only the honest copy may have been kept
        with bob.archive() as a:
            a.store.verify(asked)  # type: ignore[arg-type]
    assert not bob.json("ls", "--name", "acme/d")
    out = tmp_path / "out"
    assert not out.exists() or not any(out.rglob("*.safetensors"))  # complete, verified files may stay
    assert not out.exists() or not [p for p in out.rglob("*") if "modelarc-partial" in p.name]
    store = bob.path / "store"
    assert not [p for p in store.rglob("*") if p.is_file() and p.relative_to(store).parts[0] == "tmp"]


def test_a_repeated_object_pulls_honestly(
    server: Server,
    alice: Home,
    tmp_path: Path,
) -> None:
    asked, _length = _duplicated(alice, tmp_path)
    bob = _bob(tmp_path, server.url, alice)
    bob("pull", "acme/d:v1", tmp_path / "out", "--remote", "evil")
    assert files_of(tmp_path / "out") == files_of(tmp_path / "md")
    assert asked in object_files(bob.path / "store")
    bob("verify", "acme/d:v1")
