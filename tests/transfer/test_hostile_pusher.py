"""A pusher whose key the server trusts signs manifests that lie; the server must record none of them.

A signature says who made a claim, not that it is true: every number a manifest declares is re-derived from the
objects before the commit records anything (docs/SECURITY.md).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from catalogkit import drop_catalog
from hostilekit import HostilePusher, object_files
from modelfactory import write_model
from test_pull_folder_checks import _write_gguf
from transferkit import Server, files_of, make_home, trusted_by_server

from modelarc.archive.repository import Archive
from modelarc.errors import NotFoundError
from modelarc.storage import ObjectId

Doc = dict[str, Any]


def _file(doc: Doc, suffix: str) -> Doc:
    return next(f for f in doc["files"] if f["path"].endswith(suffix))


def _sha_lies(doc: Doc) -> None:
    _file(doc, "config.json")["sha256"] = hashlib.sha256(b"something else").hexdigest()


def _chunk_longer_than_its_object(doc: Doc) -> None:
    f = _file(doc, "config.json")
    part = f["parts"][0]
    part["chunks"][0]["length"] += 7
    part["length"] += 7
    f["size"] += 7


def _size(value: int) -> Callable[[Doc], None]:
    def lie(doc: Doc) -> None:
        f = _file(doc, "config.json")
        f["size"] = f["parts"][0]["length"] = f["parts"][0]["chunks"][0]["length"] = value

    return lie


def _tensor_renamed(doc: Doc) -> None:
    part = next(p for p in _file(doc, ".safetensors")["parts"] if p["kind"] == "tensor")
    part["name"] = "model.layers.9.not_in_the_header"


def _tensor_reshaped(doc: Doc) -> None:
    part = next(
        p for p in _file(doc, ".safetensors")["parts"] if p["kind"] == "tensor" and len(p["shape"]) == 2
    )
    part["shape"] = [part["shape"][0] * part["shape"][1]]  # same byte count: only the header can tell


def _tensors_out_of_proportion(doc: Doc) -> None:
    f = _file(doc, ".safetensors")
    empty = {"kind": "tensor", "offset": f["size"], "length": 0, "chunks": [], "dtype": "F32", "shape": [0]}
    f["parts"] += [{**empty, "name": f"t{i}"} for i in range(10_001)]  # catalog rows for no bytes at all


LIES = {
    "file sha256 does not match its chunks": _sha_lies,
    "chunk longer than its object": _chunk_longer_than_its_object,
    "size 2^62": _size(2**62),
    "size -5": _size(-5),
    "tensor entry renamed": _tensor_renamed,
    "tensor entry reshaped": _tensor_reshaped,
    "10,001 empty tensors": _tensors_out_of_proportion,
}


@pytest.fixture
def pusher(server: Server, tmp_path: Path) -> HostilePusher:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("push", write_model(tmp_path / "m"), "acme/m:v1", "--license", "mit")
    return HostilePusher(Archive.open(alice.path), server.url, server.push_token)


def _honest_manifest(pusher: HostilePusher) -> Doc:
    _ref, snap = pusher.archive.resolve("acme/m:v1")
    return pusher.archive.manifest(snap).to_json()


def _catalog_stats(archive: Archive) -> dict[str, Any]:
    """What the catalog says (the store itself does hold the uploaded objects, leased until they expire)."""
    return {k: v for k, v in archive.stats().to_json().items() if k != "store_bytes_on_disk"}


@pytest.mark.parametrize("lie", LIES.values(), ids=LIES.keys())
def test_a_commit_is_refused_when_a_signed_manifest_lies(
    server: Server, pusher: HostilePusher, lie: Callable[[Doc], None]
) -> None:
    doc = copy.deepcopy(_honest_manifest(pusher))
    lie(doc)
    pusher.upload_all(doc)
    before = _catalog_stats(server.archive)
    answer = pusher.commit(pusher.offer("acme/m:v1", doc))
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert _catalog_stats(server.archive) == before  # nothing recorded: no snapshot, no bytes counted
    with pytest.raises(NotFoundError):
        server.archive.resolve("acme/m:v1")


def test_the_same_pusher_commits_the_honest_manifest(server: Server, pusher: HostilePusher) -> None:
    doc = _honest_manifest(pusher)
    pusher.upload_all(doc)
    answer = pusher.commit(pusher.offer("acme/m:v1", doc))
    assert answer.status_code == 201, answer.text
    server.archive.verify("acme/m:v1")


def test_a_commit_missing_one_weight_chunk_is_refused_and_names_it(
    server: Server, pusher: HostilePusher
) -> None:
    doc = _honest_manifest(pusher)
    tensors = [p for f in doc["files"] for p in f["parts"] if p["kind"] == "tensor"]
    held_back = tensors[-1]["chunks"][0]["id"]
    for f in doc["files"]:
        for p in f["parts"]:
            for c in p["chunks"]:
                if c["id"] != held_back:
                    pusher.upload(c["id"])
    offer = pusher.offer("acme/m:v1", doc)
    answer = pusher.commit(offer)
    assert answer.status_code == 409, answer.text
    assert answer.json()["missing"] == [held_back]
    with pytest.raises(NotFoundError):
        server.archive.resolve("acme/m:v1")
    pusher.upload(held_back)
    assert pusher.commit(offer).status_code == 201


def test_a_push_signed_by_a_key_the_server_does_not_trust_moves_no_weights(
    server: Server, tmp_path: Path
) -> None:
    carol = make_home(tmp_path, "carol")  # her key was never imported on the server
    carol("remote", "add", "origin", server.url, "--token", server.push_token)
    carol("push", write_model(tmp_path / "m"), "acme/m:v1")
    result = carol("push", "acme/m:v1", "--remote", "origin", ok=False)
    assert "signature" in result.stderr.lower() or "trust" in result.stderr.lower(), result.stderr
    with Archive.open(carol.path) as c:
        _ref, snap = c.resolve("acme/m:v1")
        weights = {str(o) for o in c.manifest(snap).object_ids()}
    assert not weights & object_files(server.archive.settings.store_path)


def test_an_offer_body_is_bounded_before_it_is_parsed(server: Server, pusher: HostilePusher) -> None:
    for route in ("/v1/transfer/check", "/v1/transfer/commit"):
        answer = pusher.http.post(route, content=b'{"format": 1, "ref": "' + b"a" * (2 << 20) + b'"}')
        assert answer.status_code == 413, answer.text
        assert len(answer.content) < 1000  # the body is not echoed


def test_an_offer_with_too_many_items_is_refused(server: Server, pusher: HostilePusher) -> None:
    offer = pusher.offer("acme/m:v1", _honest_manifest(pusher))
    offer["signatures"] = offer["signatures"] * 65
    answer = pusher.commit(offer)
    assert answer.status_code == 400, answer.text
    assert "signatures" in answer.json()["detail"]


def test_an_offer_whose_parents_are_not_a_list_is_refused(server: Server, pusher: HostilePusher) -> None:
    offer = pusher.offer("acme/m:v1", _honest_manifest(pusher))
    offer["parents"] = 5  # was a TypeError: a 500
    answer = pusher.commit(offer)
    assert answer.status_code == 400, answer.text
    assert "parents must be a list" in answer.json()["detail"]


# ------------------------------------------------------------------------------- a file's kind and its path
# docs/FORMAT.md "Parts": a file's kind follows from its path (".safetensors" parsed, ".gguf" parsed, every
# other path a blob, the suffix compared case-sensitively). A signed manifest giving a path another kind is no
# manifest any modelarc wrote, except a .gguf file as a blob: the first modelarc did not parse GGUF (commit
# 091a2b7 began to).
KindLie = Callable[[HostilePusher, Doc], None]


def _renamed(suffix: str, new_suffix: str) -> KindLie:
    """The file ending in ``suffix`` named with ``new_suffix`` instead, its kind and bytes as they were."""

    def lie(_pusher: HostilePusher, doc: Doc) -> None:
        f = _file(doc, suffix)
        f["path"] = f["path"][: -len(suffix)] + new_suffix

    return lie


def _as_one_blob(suffix: str) -> KindLie:
    """The file as a blob of one chunk, its whole bytes (each test file is under the 8 MiB chunk size): how a
    writer that did not parse the file, such as the first modelarc for a .gguf file, stored it."""

    def lie(pusher: HostilePusher, doc: Doc) -> None:
        f = _file(doc, suffix)
        chunks = [ObjectId(c["id"]) for p in f["parts"] for c in p["chunks"]]
        data = b"".join(bytes(pusher.archive.store.get(oid)) for oid in chunks)
        assert len(data) == f["size"] and hashlib.sha256(data).hexdigest() == f["sha256"]
        chunk = {"id": pusher.put_bytes(data), "length": len(data)}
        f.update(kind="blob", parts=[{"kind": "blob", "offset": 0, "length": len(data), "chunks": [chunk]}])

    return lie


KIND_LIES: dict[str, tuple[str, KindLie]] = {
    "model.bin claimed as safetensors": ("m", _renamed(".safetensors", ".bin")),
    "model.SAFETENSORS claimed as safetensors": ("m", _renamed(".safetensors", ".SAFETENSORS")),
    "model.safetensors as a blob": ("m", _as_one_blob(".safetensors")),
    "model.GGUF claimed as gguf": ("g", _renamed(".gguf", ".GGUF")),
    "model.bin claimed as gguf": ("g", _renamed(".gguf", ".bin")),
}


def _with_gguf(pusher: HostilePusher, tmp_path: Path) -> None:
    pusher.archive.push(_write_gguf(tmp_path / "g"), "acme/g:v1")


@pytest.mark.parametrize(("model", "lie"), KIND_LIES.values(), ids=KIND_LIES.keys())
def test_a_commit_is_refused_when_a_file_kind_is_not_the_one_its_path_gives(
    server: Server, pusher: HostilePusher, tmp_path: Path, model: str, lie: KindLie
) -> None:
    """Every byte checks out (sizes, sha256, the header of a parsed file against its tensor parts): only the kind
    disagrees with the path, which decides how the file is read and listed."""
    if model == "g":
        _with_gguf(pusher, tmp_path)
    ref = f"acme/{model}:v1"
    _ref, snap = pusher.archive.resolve(ref)
    doc = copy.deepcopy(pusher.archive.manifest(snap).to_json())
    lie(pusher, doc)
    pusher.upload_all(doc)
    before = _catalog_stats(server.archive)
    answer = pusher.commit(pusher.offer(ref, doc))
    assert answer.status_code == 422, answer.text
    detail = answer.json()["detail"]
    assert "the manifest gives it kind" in detail and 'docs/FORMAT.md "Parts"' in detail, detail
    assert _catalog_stats(server.archive) == before
    with pytest.raises(NotFoundError):
        server.archive.resolve(ref)


def test_a_gguf_file_stored_as_a_blob_by_the_first_modelarc_is_still_received_pulled_and_rebuilt(
    server: Server, pusher: HostilePusher, tmp_path: Path
) -> None:
    """The one combination an earlier modelarc wrote that today's would not, a .gguf path of kind blob, passes
    every reader that checks a manifest from elsewhere: a server receiving it, a `pull --remote` client, and a
    rebuild reading it from the store."""
    _with_gguf(pusher, tmp_path)
    _ref, snap = pusher.archive.resolve("acme/g:v1")
    doc = copy.deepcopy(pusher.archive.manifest(snap).to_json())
    _as_one_blob(".gguf")(pusher, doc)
    pusher.upload_all(doc)
    answer = pusher.commit(pusher.offer("acme/g:v1", doc))
    assert answer.status_code == 201, answer.text
    server.archive.verify("acme/g:v1")
    _ref, received = server.archive.resolve("acme/g:v1")
    assert [f.kind for f in server.archive.manifest(received).files if f.path.endswith(".gguf")] == ["blob"]

    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url, "--token", server.read_token)
    (tmp_path / "alice.pem").write_bytes(pusher.archive.public_key_pem())
    bob("keys", "import", tmp_path / "alice.pem", "--label", "alice")
    bob("pull", "acme/g:v1", tmp_path / "out", "--remote", "origin")
    assert files_of(tmp_path / "out") == files_of(tmp_path / "g")
    drop_catalog(bob.env["MODELARC_DATABASE_URL"])
    rebuilt = bob("rebuild-catalog", "--json")
    report = json.loads(rebuilt.stdout)
    assert report["refused"] == {} and report["replayed"].get("snapshot") == 1, report
    bob("verify", "acme/g:v1")
