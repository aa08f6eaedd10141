"""A remote (here a rewriting proxy in front of a real `modelarc serve`) may answer anything; the puller records only
what it asked for and what it verified.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hostilekit import Rewrite, RewritingProxy, batch_frames, object_files, pack_batch, serve_proxy
from modelfactory import finetune, tiny_tensors, write_model
from transferkit import Home, Server, copy_into, files_of, make_home, trusted_by_server

from modelarc.archive.provenance.withdrawal import withdraw


# One server per module and backend (``module_server``), which the tests only read: each puller (bob) is the test's
# own. The test that withdraws a snapshot on the server has a server of its own. Each test has its own copy of
# alice's home and models, so that nothing one test does to her is seen by another.
@pytest.fixture(scope="module")
def pushed(module_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding alice/, a pusher the server trusts, who has pushed m1/ as acme/m:v1 and a different m2/ as
    acme/m:v2 to it; made once per module and backend."""
    made = tmp_path_factory.mktemp("pushed")
    home = make_home(made, "alice")
    trusted_by_server(module_server, home)
    home("remote", "add", "origin", module_server.url, "--token", module_server.push_token)
    home("push", write_model(made / "m1"), "acme/m:v1", "--remote", "origin")
    tuned = finetune(tiny_tensors(), ["model.layers.0.mlp.weight"])
    home("push", write_model(made / "m2", tuned), "acme/m:v2", "--remote", "origin")
    return made


@pytest.fixture
def alice(pushed: Path, tmp_path: Path) -> Home:
    """A pusher the server trusts, who has pushed ``tmp_path / "m1"`` as acme/m:v1 and a different
    ``tmp_path / "m2"`` as acme/m:v2 to it: this test's own copy of ``pushed``."""
    copy_into(pushed, tmp_path)
    return Home(tmp_path / "alice", CliRunner())


def _bob(tmp_path: Path, url: str, alice: Home) -> Home:
    """A puller who trusts the server's key and alice's key, with a model of his own at victim/prod:v1."""
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "evil", url)
    bob("keys", "import", _export_key(alice, tmp_path), "--label", "alice")
    bob("push", write_model(tmp_path / "own", tiny_tensors(seed=7)), "victim/prod:v1")
    return bob


def _refused_pull(
    server: Server, alice: Home, tmp_path: Path, rewrite: Rewrite
) -> tuple[Home, Result, RewritingProxy]:
    """Bob pulls acme/m:v1 into ``tmp_path / "out"`` through a proxy that applies ``rewrite`` to the server's
    answers, expecting the pull to fail: bob, the failed command, and the proxy (its ``requests``)."""
    proxy = RewritingProxy(server.url, rewrite=rewrite)
    with serve_proxy(proxy) as url:
        bob = _bob(tmp_path, url, alice)
        result = bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "evil", ok=False)
    return bob, result, proxy


def _export_key(home: Home, tmp_path: Path) -> Path:
    pem = tmp_path / f"{home.path.name}.pem"
    pem.write_text(home("keys", "export").stdout)
    return pem


def _digest(home: Home, ref: str) -> str:
    doc = home.json("show", ref)
    assert isinstance(doc, dict)
    return str(doc["snapshot"])


def test_an_offer_that_names_another_ref_cannot_move_the_pullers_other_tags(
    module_server: Server, alice: Home, tmp_path: Path
) -> None:
    def retarget(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if "/v1/transfer/snapshots/" in path and status == 200:
            doc = json.loads(body)
            doc["ref"] = "victim/prod:v1"
            body = json.dumps(doc).encode()
        return status, headers, body

    with serve_proxy(RewritingProxy(module_server.url, rewrite=retarget)) as url:
        bob = _bob(tmp_path, url, alice)
        own = _digest(bob, "victim/prod:v1")
        bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "evil")
    assert _digest(bob, "victim/prod:v1") == own  # untouched
    assert _digest(bob, "acme/m:v1") == _digest(alice, "acme/m:v1")  # recorded under the name asked for
    log = bob.json("log", "victim/prod")
    assert isinstance(log, dict) and len(log["tag_moves"]) == 1


@pytest.mark.parametrize("dest", [False, True])
def test_a_tag_pull_moves_the_tag_asked_for_whatever_move_tag_the_offer_says(
    module_server: Server, alice: Home, tmp_path: Path, dest: bool
) -> None:
    def no_tag(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if "/v1/transfer/snapshots/" in path and status == 200:
            doc = json.loads(body)
            doc["move_tag"] = False
            body = json.dumps(doc).encode()
        return status, headers, body

    with serve_proxy(RewritingProxy(module_server.url, rewrite=no_tag)) as url:
        bob = _bob(tmp_path, url, alice)
        bob("pull", "acme/m:v1", *([tmp_path / "out"] if dest else []), "--remote", "evil")
    assert _digest(bob, "acme/m:v1") == _digest(alice, "acme/m:v1")


def test_a_pull_by_digest_refuses_any_other_snapshot(
    module_server: Server, alice: Home, tmp_path: Path
) -> None:
    v1, v2 = _digest(alice, "acme/m:v1"), _digest(alice, "acme/m:v2")
    with serve_proxy(RewritingProxy(module_server.url, route=lambda path: path.replace(v1, v2))) as url:
        bob = _bob(tmp_path, url, alice)
        before = object_files(bob.path / "store")
        result = bob("pull", f"acme/m@{v1}", tmp_path / "out", "--remote", "evil", ok=False)
    assert v1 in result.stderr and v2 in result.stderr
    assert not (tmp_path / "out").exists()
    assert object_files(bob.path / "store") == before  # not even the other manifest was kept
    bob("show", "acme/m:latest", ok=False)
    assert not bob.json("ls", "--name", "acme/m")


def test_a_refused_signature_moves_no_weights(module_server: Server, alice: Home, tmp_path: Path) -> None:
    bob = make_home(tmp_path, "bob")  # trusts the server's key, not alice's
    bob("remote", "add", "origin", module_server.url)
    result = bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "origin", ok=False)
    assert "signature" in result.stderr.lower()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with alice.archive() as a:
        _ref, snap = a.resolve("acme/m:v1")
        weights = {str(o) for o in a.manifest(snap).object_ids()}
    assert not weights & object_files(bob.path / "store")
    assert not bob.json("ls")


def _a_weight(alice: Home) -> str:
    """The id of acme/m:v1's largest weight chunk (not in bob's store)."""
    with alice.archive() as a:
        _ref, snap = a.resolve("acme/m:v1")
        manifest = a.manifest(snap)
    return max((p for _f, p in manifest.tensors()), key=lambda p: p.length).chunks[0].id


def _older_server(path: str) -> bool:
    """Whether a request is one a server older than the batch route would not know."""
    return path.endswith("/v1/objects/batch")


@pytest.mark.parametrize("route", ["batch", "one by one"])
@pytest.mark.parametrize("lie", ["declared size", "content length"])
def test_an_object_body_is_judged_by_its_header_before_it_is_read(
    module_server: Server, alice: Home, tmp_path: Path, lie: str, route: str
) -> None:
    weight = _a_weight(alice)

    def huge(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if route == "one by one" and _older_server(path):
            return 405, {}, b""  # the puller falls back to GET /v1/objects/{id}
        if path.endswith(f"/v1/objects/{weight}"):
            if lie == "declared size":  # the header claims 1 TiB of decoded bytes
                body = body[:8] + struct.pack("<Q", 1 << 40) + body[16:]
            else:  # the header is honest, the body claims 1 TiB and sends a few bytes
                headers = {**headers, "Content-Length": str(1 << 40)}
        if path.endswith("/v1/objects/batch"):  # the same lies, inside the weight's frame
            frames = []
            for oid, kind, payload in batch_frames(body):
                declared = len(payload)
                if oid == weight and lie == "declared size":
                    payload = payload[:8] + struct.pack("<Q", 1 << 40) + payload[16:]
                elif oid == weight:
                    declared = 1 << 40
                frames.append((oid, kind, payload, declared))
            body = pack_batch(frames)
        return status, headers, body

    bob, result, proxy = _refused_pull(module_server, alice, tmp_path, huge)
    assert weight in result.stderr
    assert not bob.json("ls", "--name", "acme/m")
    fetched_alone = any(r.startswith("GET") and r.endswith(weight) for r in proxy.requests)
    assert fetched_alone == (route == "one by one")


def test_a_content_length_that_is_not_ascii_digits_is_refused(
    module_server: Server, alice: Home, tmp_path: Path
) -> None:
    weight = _a_weight(alice)

    def superscript(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if _older_server(path):
            return 405, {}, b""  # the puller falls back to GET /v1/objects/{id}
        if path.endswith(f"/v1/objects/{weight}"):
            headers = {**headers, "Content-Length": "\u00b2"}  # str.isdigit() says yes, int() says no
        return status, headers, body

    bob, result, _proxy = _refused_pull(module_server, alice, tmp_path, superscript)
    assert result.exit_code == 5 and "Traceback" not in result.output, result.output
    assert weight in result.stderr and "bytes; at most" in result.stderr
    assert not bob.json("ls", "--name", "acme/m")


@pytest.mark.parametrize("parents", [5, "acme/x", {"ref": "acme/x"}])
def test_an_offer_whose_parents_are_not_a_list_is_refused(
    module_server: Server, alice: Home, tmp_path: Path, parents: object
) -> None:
    def odd(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if "/v1/transfer/snapshots/" in path and status == 200:
            doc = json.loads(body)
            doc["parents"] = parents
            body = json.dumps(doc).encode()
        return status, headers, body

    _bob_home, result, _proxy = _refused_pull(module_server, alice, tmp_path, odd)
    assert "Traceback" not in result.output and "parents must be a list" in result.stderr, result.output


@pytest.mark.parametrize("lie", ["another object in its place", "a frame short"])
def test_a_batch_that_does_not_answer_what_was_asked_is_refused(
    module_server: Server, alice: Home, tmp_path: Path, lie: str
) -> None:
    swapped: list[str] = []

    def reorder(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if path.endswith("/v1/objects/batch"):
            frames = [(oid, kind, payload, len(payload)) for oid, kind, payload in batch_frames(body)]
            if lie == "another object in its place" and len(frames) > 1:
                frames[0], frames[1] = frames[1], frames[0]  # each object genuine, in the wrong order
                swapped.append(frames[1][0])
            elif lie == "a frame short":
                frames = frames[:-1]
                swapped.append("short")
            body = pack_batch(frames)
        return status, headers, body

    bob, result, _proxy = _refused_pull(module_server, alice, tmp_path, reorder)
    assert swapped, "the pull sent no batch"
    assert "error:" in result.stderr and "Traceback" not in result.stderr
    if lie == "another object in its place":
        assert f"where {swapped[0]} was due" in result.stderr
    assert not bob.json("ls", "--name", "acme/m")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.safetensors"))


def _chunk_of(home: Home, ref: str, tensor: str) -> str:
    with home.archive() as a:
        _ref, snap = a.resolve(ref)
        manifest = a.manifest(snap)
    return next(p for _f, p in manifest.tensors() if p.name == tensor).chunks[0].id


@pytest.mark.parametrize("route", ["batch", "one by one"])
def test_a_well_formed_object_sent_under_another_id_is_refused_and_not_kept(
    module_server: Server, alice: Home, tmp_path: Path, route: str
) -> None:
    """A pull into a folder hashes each downloaded object in the same pass as its file, after writing it into the
    file's temp file, and keeps it only once that hash is its id: an object that decodes cleanly, has the length
    the manifest gives, but holds other bytes (v2's version of the same tensor) must fail the pull, naming it, and
    never enter the puller's store under the id it was sent as."""
    tensor = "model.layers.0.mlp.weight"
    asked, other = _chunk_of(alice, "acme/m:v1", tensor), _chunk_of(alice, "acme/m:v2", tensor)
    assert asked != other
    impostor = (alice.path / "store" / "objects" / other[:2] / other).read_bytes()

    def swap(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if route == "one by one" and _older_server(path):
            return 405, {}, b""
        if path.endswith(f"/v1/objects/{asked}"):
            return status, {**headers, "Content-Length": str(len(impostor))}, impostor
        if path.endswith("/v1/objects/batch"):
            frames = [
                (
                    oid,
                    kind,
                    impostor if oid == asked else payload,
                    len(impostor) if oid == asked else len(payload),
                )
                for oid, kind, payload in batch_frames(body)
            ]
            body = pack_batch(frames)
        return status, headers, body

    bob, result, _proxy = _refused_pull(module_server, alice, tmp_path, swap)
    assert asked in result.stderr and "bad object" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert asked not in object_files(bob.path / "store")
    assert not bob.json("ls", "--name", "acme/m")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.safetensors"))
    # the honest remote behind the proxy: the same pull now completes, and every object kept verifies
    bob("remote", "add", "origin", module_server.url)
    bob("pull", "acme/m:v1", tmp_path / "again", "--remote", "origin")
    assert files_of(tmp_path / "again") == files_of(tmp_path / "m1")
    bob("verify", "acme/m:v1")


def test_a_remote_without_the_batch_route_is_pulled_one_object_at_a_time(
    module_server: Server, alice: Home, tmp_path: Path
) -> None:
    def older(method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        return (405, {}, b"") if _older_server(path) else (status, headers, body)

    proxy = RewritingProxy(module_server.url, rewrite=older)
    with serve_proxy(proxy) as url:
        bob = _bob(tmp_path, url, alice)
        bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "evil")
    assert files_of(tmp_path / "out") == files_of(tmp_path / "m1")
    assert sum(r.startswith("POST") and _older_server(r) for r in proxy.requests) == 1  # asked once, then not
    assert sum(r.startswith("GET /v1/objects/") for r in proxy.requests) > 1


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
