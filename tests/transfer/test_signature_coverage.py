"""What a pull from a hostile remote records as signed: every file covered by the signature that verifies, only the
bundles that sign this snapshot, only the snapshot a full digest names, and a tag moved aloud.

The remote is a rewriting proxy in front of a real `modelarc serve`; what it forges is served from alice's store,
signed with alice's real key (by the real model_signing for its own bundle form), and the puller trusts alice.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import model_signing
import pytest
from click.testing import CliRunner
from hostilekit import RewritingProxy, object_files, serve_proxy
from modelfactory import write_model
from transferkit import Home, Server, copy_into, files_of, make_home, trusted_by_server

from modelarc.archive.manifest import SnapshotManifest, canonical_json
from modelarc.archive.repository import check_bundles
from modelarc.archive.signing import keys as keyring
from modelarc.archive.signing.bundles import FileDigest, sign_snapshot
from modelarc.errors import SignatureError
from modelarc.storage import ObjectId

GIT_FILES = {
    ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    ".github/workflows/x.yml": b"on: push\n",
}


def _alice_pushes(server: Server, made: Path) -> Home:
    """alice (``made / "alice"``), a pusher ``server`` trusts, who has pushed ``made / "m1"`` to it as acme/m:v1 and
    ``made / "m2"`` (the same model with a NOTES.md) as acme/m:v2."""
    home = make_home(made, "alice")
    trusted_by_server(server, home)
    home("remote", "add", "origin", server.url, "--token", server.push_token)
    home("push", write_model(made / "m1"), "acme/m:v1", "--remote", "origin")
    (made / "m2").mkdir()
    write_model(made / "m2", extra_files={"NOTES.md": b"v2\n"})
    home("push", made / "m2", "acme/m:v2", "--remote", "origin")
    return home


# One server per module and backend (``module_server``), which the tests only read, but for acme/hub:v1, which one
# test pushes and none other asks for. The test whose failure would move the acme/m:v1 every other test pulls has
# a server of its own. Each test has its own alice, a copy: tests push forgeries and put objects into her archive.
@pytest.fixture(scope="module")
def pushed(module_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding alice/ and her models m1/ and m2/, made once per module and backend."""
    made = tmp_path_factory.mktemp("pushed")
    _alice_pushes(module_server, made)
    return made


@pytest.fixture
def alice(pushed: Path, tmp_path: Path) -> Home:
    """A pusher the server trusts, who has pushed ``tmp_path / "m1"`` as acme/m:v1 and ``tmp_path / "m2"`` (the same
    model with a NOTES.md) as acme/m:v2: this test's own copy of ``pushed``."""
    copy_into(pushed, tmp_path)
    return Home(tmp_path / "alice", CliRunner())


def _bob(tmp_path: Path, url: str, alice: Home) -> Home:
    """A puller who trusts the remote's key (remote add) and alice's."""
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "evil", url)
    pem = tmp_path / "alice.pem"
    pem.write_text(alice("keys", "export").stdout)
    bob("keys", "import", pem, "--label", "alice")
    return bob


def _digest(home: Home, ref: str) -> str:
    doc = home.json("show", ref)
    assert isinstance(doc, dict)
    return str(doc["snapshot"])


def _key_path(home: Home) -> Path:
    return home.path / "keys" / "signing-key.pem"


def _model_signing_bundle(alice: Home, folder: Path, tmp_path: Path) -> bytes:
    """alice's signature of ``folder`` made by model_signing itself: no predicate.modelarc, .git* not hashed."""
    out = tmp_path / "ms.sig"
    model_signing.signing.Config().use_elliptic_key_signer(private_key=_key_path(alice)).sign(folder, out)
    return out.read_bytes()


class Forgery:
    """Objects from alice's store that the remote serves as if they were its own, and the offer it answers with."""

    def __init__(self, alice: Home) -> None:
        self.alice = alice
        self.stored: dict[str, bytes] = {}  # read up front: the proxy's threads never open alice's archive
        self.offer: dict[str, Any] = {}

    def put(self, data: bytes) -> str:
        with self.alice.archive() as a:
            oid = str(a.store.put(data).id)
            a.store.sync()
        self._serve(oid)
        return oid

    def serve_objects_of(self, manifest: SnapshotManifest) -> None:
        for oid in {manifest.snapshot_id.hex, *(str(o) for o in manifest.object_ids())}:
            self._serve(oid)

    def _serve(self, oid: str) -> None:
        with self.alice.archive() as a:
            self.stored[oid] = bytes(a.store.get_stored(ObjectId(oid)))

    def rewrite(self, method: str, path: str, status: int, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if path.endswith("/v1/objects/batch"):
            return 405, {}, b""  # one object at a time, so each forged one is served below
        if "/v1/transfer/snapshots/" in path and status == 200 and self.offer:
            doc = json.loads(body)
            doc.update(self.offer)
            return status, headers, json.dumps(doc).encode()
        oid = path.rsplit("/", 1)[-1]
        if method == "GET" and "/v1/objects/" in path and oid in self.stored:
            return 200, {"Content-Type": "application/octet-stream"}, self.stored[oid]
        return status, headers, body


def _with_git_files(alice: Home, tmp_path: Path, forgery: Forgery) -> tuple[SnapshotManifest, Path]:
    """v1's files plus .gitattributes and .github/..., archived by alice locally (a real manifest): the manifest and
    the folder."""
    folder = tmp_path / "withgit"
    shutil.copytree(tmp_path / "m1", folder)
    for rel, data in GIT_FILES.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    alice("push", folder, "forge/withgit:v1")
    with alice.archive() as a:
        _ref, snap = a.resolve("forge/withgit:v1")
        manifest = a.manifest(snap)
    forgery.serve_objects_of(manifest)
    return manifest, folder


def test_files_a_model_signing_bundle_does_not_list_are_refused_before_weights_move(
    module_server: Server, alice: Home, tmp_path: Path
) -> None:
    forgery = Forgery(alice)
    manifest, folder = _with_git_files(alice, tmp_path, forgery)
    bundle = _model_signing_bundle(
        alice, folder, tmp_path
    )  # alice signed the model files, as model_signing does
    forgery.offer = {"snapshot": str(manifest.snapshot_id), "signatures": [forgery.put(bundle)]}
    proxy = RewritingProxy(module_server.url, rewrite=forgery.rewrite)
    with serve_proxy(proxy) as url:
        bob = _bob(tmp_path, url, alice)
        result = bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "evil", ok=False)
    assert "file .gitattributes and 1 more is not covered by the signature" in result.stderr
    assert not (tmp_path / "out").exists()  # refused before a file was written
    assert not bob.json("ls")
    weights = {str(c.id) for _f, p in manifest.tensors() for c in p.chunks}
    assert not weights & object_files(bob.path / "store")


def test_check_bundles_refuses_a_manifest_with_files_outside_a_model_signing_bundle(
    alice: Home, tmp_path: Path
) -> None:
    """The one check verify, rebuild, a pull and a server's commit share."""
    manifest, folder = _with_git_files(alice, tmp_path, Forgery(alice))
    bundle = _model_signing_bundle(alice, folder, tmp_path)
    with alice.archive() as a:
        trusted = a.trusted_pems()
    with pytest.raises(SignatureError, match=r"\.gitattributes and 1 more is not covered"):
        check_bundles([bundle], manifest, manifest.snapshot_id, trusted)
    # the same files signed by modelarc: the signed snapshot id covers .gitattributes (model_signing skips it)
    ours = sign_snapshot(
        [FileDigest(f.path, f.sha256) for f in manifest.files],
        manifest.snapshot_id,
        keyring.load_private_key(_key_path(alice)),
    )
    fingerprint, _ = check_bundles([ours], manifest, manifest.snapshot_id, trusted)
    assert fingerprint == keyring.key_fingerprint(
        keyring.public_key_pem(keyring.load_private_key(_key_path(alice)))
    )


def test_a_model_signing_bundle_that_lists_every_file_still_pulls(
    module_server: Server, alice: Home, tmp_path: Path
) -> None:
    forgery = Forgery(alice)
    bundle = _model_signing_bundle(alice, tmp_path / "m1", tmp_path)
    forgery.offer = {"signatures": [forgery.put(bundle)]}  # v1 as it is, signed by model_signing only
    with serve_proxy(RewritingProxy(module_server.url, rewrite=forgery.rewrite)) as url:
        bob = _bob(tmp_path, url, alice)
        bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "evil")
    assert files_of(tmp_path / "out") == files_of(tmp_path / "m1")
    bob("verify", "acme/m:v1")


def test_our_push_of_a_hub_folder_with_gitattributes_round_trips_signed(
    module_server: Server, alice: Home, tmp_path: Path
) -> None:
    """modelarc's own bundles leave .gitattributes out of the resources (model_signing skips it) and cover it by
    the signed snapshot id: the pull accepts it, and model_signing verifies the restored folder."""
    folder = write_model(tmp_path / "hub", extra_files=GIT_FILES)
    alice("push", folder, "acme/hub:v1", "--remote", "origin")
    bob = _bob(tmp_path, module_server.url, alice)
    bob(
        "pull",
        "acme/hub:v1",
        tmp_path / "out",
        "--remote",
        "evil",
        "--signature",
        tmp_path / "out" / "model.sig",
    )
    assert files_of(tmp_path / "out") == {
        **files_of(folder),
        "model.sig": files_of(tmp_path / "out")["model.sig"],
    }
    bob("verify", "acme/hub:v1")
    public = tmp_path / "alice.pem"
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=public).verify(
        tmp_path / "out", tmp_path / "out" / "model.sig"
    )


def test_a_server_refuses_a_pushed_model_signing_bundle_that_leaves_files_unsigned(
    server: Server, tmp_path: Path
) -> None:
    from hostilekit import HostilePusher

    # a server of its own, not module_server: were the commit taken, acme/m:v1 would move under the other tests
    alice = _alice_pushes(server, tmp_path)
    manifest, folder = _with_git_files(alice, tmp_path, Forgery(alice))
    bundle = _model_signing_bundle(alice, folder, tmp_path)
    pusher = HostilePusher(alice.archive(), server.url, server.push_token)
    doc = json.loads(manifest.canonical_bytes())
    offer = pusher.offer("acme/m:v1", doc)
    offer["signatures"] = [pusher.put_bytes(bundle)]
    pusher.upload_all(doc)
    answer = pusher.commit(offer)
    assert answer.status_code >= 400 and "not covered by the signature" in answer.text, answer.text
    with server.archive.catalog.session():
        assert _digest_on_server(server, "acme/m:v1") != str(manifest.snapshot_id)


def _digest_on_server(server: Server, ref: str) -> str:
    _ref, snap = server.archive.resolve(ref)
    return str(snap.digest)


def _manifest_doc(alice: Home, ref: str) -> dict[str, Any]:
    with alice.archive() as a:
        _ref, snap = a.resolve(ref)
        return json.loads(a.manifest(snap).canonical_bytes())  # type: ignore[no-any-return]


@pytest.mark.parametrize("git_path", [".git/config", "sub/.GIT/config", ".git"])
def test_a_git_path_is_refused_even_when_a_trusted_key_signs_it(
    module_server: Server, alice: Home, tmp_path: Path, git_path: str
) -> None:
    """.git/config can name a command git runs in the pulled folder (core.fsmonitor): no signature makes it a
    model file."""
    forgery = Forgery(alice)
    manifest, _folder = _with_git_files(alice, tmp_path, forgery)
    doc = json.loads(manifest.canonical_bytes())
    entry = dict(next(f for f in doc["files"] if f["path"] == ".gitattributes"))
    entry["path"] = git_path
    doc["files"].append(entry)
    doc["files"].sort(key=lambda f: f["path"])
    raw = canonical_json(doc)
    forged = SnapshotManifest.from_bytes(raw)
    manifest_id = forgery.put(raw)
    assert f"sha256:{manifest_id}" == forged.snapshot_id
    bundle = sign_snapshot(  # modelarc's own form, by alice: every file signed, the snapshot id too
        [FileDigest(f.path, f.sha256) for f in forged.files],
        forged.snapshot_id,
        keyring.load_private_key(_key_path(alice)),
    )
    forgery.offer = {"snapshot": str(forged.snapshot_id), "signatures": [forgery.put(bundle)]}
    with serve_proxy(RewritingProxy(module_server.url, rewrite=forgery.rewrite)) as url:
        bob = _bob(tmp_path, url, alice)
        result = bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "evil", ok=False)
    assert "is a .git path" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()
    assert not bob.json("ls")


# ---------------------------------------------------------------- junk in the offer's signatures


@pytest.mark.parametrize("junk", ["text", "another snapshot's bundle", "not utf-8"])
def test_only_bundles_that_sign_this_snapshot_are_recorded(
    module_server: Server, alice: Home, tmp_path: Path, junk: str
) -> None:
    forgery = Forgery(alice)
    with alice.archive() as a:
        _ref, v1 = a.resolve("acme/m:v1")
        _ref, v2 = a.resolve("acme/m:v2")
        honest = a.signature_object_ids(v1)
        other = a.signature_object_ids(v2)
    if junk == "text":
        extra = forgery.put(b"this is not a signature")
    elif junk == "not utf-8":
        extra = forgery.put(b'{"mediaType": "\xff\xfe"}')
    else:
        extra = other[0]
    forgery.offer = {"signatures": [*honest, extra]}
    with serve_proxy(RewritingProxy(module_server.url, rewrite=forgery.rewrite)) as url:
        bob = _bob(tmp_path, url, alice)
        bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "evil")
    shown = bob.json("show", "acme/m:v1")
    assert isinstance(shown, dict)
    assert len(shown["signatures"]) == 1, shown["signatures"]
    with bob.archive() as b:
        _ref, snap = b.resolve("acme/m:v1")
        assert b.signature_object_ids(snap) == honest
    bob("verify", "acme/m:v1")


def test_an_offer_whose_bundles_all_are_junk_is_refused_cleanly_before_weights_move(
    module_server: Server, alice: Home, tmp_path: Path
) -> None:
    forgery = Forgery(alice)
    forgery.offer = {"signatures": [forgery.put(b"\xff\xfe\x00junk"), forgery.put(b"plain text")]}
    with serve_proxy(RewritingProxy(module_server.url, rewrite=forgery.rewrite)) as url:
        bob = _bob(tmp_path, url, alice)
        result = bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "evil", ok=False)
    assert "no valid signature" in result.stderr
    assert not (tmp_path / "out").exists()
    assert not bob.json("ls")


# ---------------------------------------------------------------- digest prefixes, tag moves


def test_a_pull_from_a_remote_by_digest_prefix_is_refused_before_asking(
    module_server: Server, alice: Home, tmp_path: Path
) -> None:
    proxy = RewritingProxy(module_server.url)
    v1 = _digest(alice, "acme/m:v1")
    with serve_proxy(proxy) as url:
        bob = _bob(tmp_path, url, alice)
        result = bob("pull", f"acme/m@{v1[:19]}", "--remote", "evil", ok=False)
        assert "full sha256:<64 hex digits>" in result.stderr
        assert not any("/v1/transfer/snapshots/" in r for r in proxy.requests)
        bob("pull", f"acme/m@{v1}", "--remote", "evil")  # the full digest pulls
    assert not bob.json("ls", "--name", "acme/m") == []


def test_a_pull_that_moves_a_local_tag_says_from_where_to_where(
    module_server: Server, alice: Home, tmp_path: Path
) -> None:
    v1, v2 = _digest(alice, "acme/m:v1"), _digest(alice, "acme/m:v2")
    rolled = {"on": False}
    proxy = RewritingProxy(
        module_server.url,
        route=lambda path: path.replace("/acme/m/v2", "/acme/m/v1") if rolled["on"] else path,
    )
    with serve_proxy(proxy) as url:
        bob = _bob(tmp_path, url, alice)
        first = bob("pull", "acme/m:v2", "--remote", "evil")
        assert "moved" not in first.output
        rolled["on"] = True
        again = bob("pull", "acme/m:v2", "--remote", "evil")
    said = " ".join(again.output.split())
    assert f"tag acme/m:v2 moved here: {v2} -> {v1}" in said, again.output
    assert _digest(bob, "acme/m:v2") == v1
