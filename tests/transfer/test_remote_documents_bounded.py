"""The documents an offer names - its manifest, signature bundles and training-data manifests - are read before any
weight moves, so each is bounded on its own: by its object header before it is decoded (a bundle is no 256 MiB
weight chunk), one at a time, and the manifest only once a bundle by a trusted key signs it (docs/FORMAT.md,
Limits). A remote (a rewriting proxy in front of a real ``modelarc serve``) or a pusher may name any object.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hostilekit import HostilePusher, RewritingProxy, object_files, serve_proxy
from modelfactory import write_model
from transferkit import Home, Server, copy_into, make_home, trusted_by_server

from modelarc.archive.limits import MAX_BUNDLE_BYTES, MAX_MANIFEST_BYTES
from modelarc.storage import ObjectStore


# One server per module and backend, which the tests only read (what a pusher uploads to it no other test names).
@pytest.fixture(scope="module")
def pushed(module_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding alice/, a pusher the server trusts who has pushed acme/m:v1 to it."""
    made = tmp_path_factory.mktemp("pushed")
    home = make_home(made, "alice")
    trusted_by_server(module_server, home)
    home("remote", "add", "origin", module_server.url, "--token", module_server.push_token)
    home("push", write_model(made / "m1"), "acme/m:v1", "--remote", "origin")
    return made


@pytest.fixture
def alice(pushed: Path, tmp_path: Path) -> Home:
    copy_into(pushed, tmp_path)
    return Home(tmp_path / "alice", CliRunner())


def _stored(tmp_path: Path, raw: bytes) -> tuple[str, bytes]:
    """``raw`` as another store would send it: (object id, header + encoded payload)."""
    store = ObjectStore.open_local(tmp_path / "junkstore")
    oid = store.put(raw).id
    return str(oid), store.get_stored(oid)


def _offering(extra: dict[str, bytes], change: Any) -> Any:
    """A rewrite that changes the offer (``change(doc)``) and answers a GET of each id in ``extra`` with its blob."""

    def rewrite(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> Any:
        if "/v1/transfer/snapshots/" in path and status == 200:
            doc = json.loads(body)
            change(doc)
            return status, headers, json.dumps(doc).encode()
        oid = path.split("?")[0].rsplit("/", 1)[-1]
        if method == "GET" and "/v1/objects/" in path and oid in extra:
            return 200, {"content-type": "application/octet-stream"}, extra[oid]
        return status, headers, body

    return rewrite


def _pull(server: Server, tmp_path: Path, pushed: Path, rewrite: Any, *, ok: bool) -> tuple[Home, str]:
    """Bob, who trusts alice's key, pulls acme/m:v1 through a proxy applying ``rewrite``: bob and what he was told."""
    pem = tmp_path / "alice.pem"
    pem.write_text(Home(pushed / "alice", CliRunner())("keys", "export").stdout)
    with serve_proxy(RewritingProxy(server.url, rewrite=rewrite)) as url:
        bob = make_home(tmp_path, "bob")
        bob("remote", "add", "evil", url)
        bob("keys", "import", pem, "--label", "alice")
        result = bob("pull", "acme/m:v1", "--remote", "evil", ok=ok)
    return bob, result.stdout + result.stderr


def test_a_pull_refuses_a_bundle_that_declares_more_than_a_bundle_may_hold(
    module_server: Server, tmp_path: Path, pushed: Path
) -> None:
    junk, blob = _stored(tmp_path, bytes(MAX_BUNDLE_BYTES + 1))  # a few KB on the wire
    rewrite = _offering({junk: blob}, lambda doc: doc.update(signatures=[*doc["signatures"], junk]))
    bob, said = _pull(module_server, tmp_path, pushed, rewrite, ok=False)
    assert f"{MAX_BUNDLE_BYTES:,}" in said and junk in said
    assert junk not in object_files(bob.path / "store")
    assert bob.json("ls") == []


def test_the_objects_counted_as_moved_are_the_snapshots_own(
    module_server: Server, tmp_path: Path, pushed: Path
) -> None:
    """Bundles that do not sign the snapshot are downloaded and dropped: not counted as its objects."""
    junk = [_stored(tmp_path, f"not a bundle {i}".encode()) for i in range(3)]
    rewrite = _offering(
        dict(junk), lambda doc: doc.update(signatures=[*doc["signatures"], *(oid for oid, _ in junk)])
    )
    _bob, said = _pull(module_server, tmp_path, pushed, rewrite, ok=True)
    moved = re.search(r"(\d+) of (\d+) objects transferred", said)
    assert moved, said
    assert moved.group(1) == moved.group(2)  # a fresh puller fetched every object of the snapshot, and no other


def test_a_pull_refuses_a_manifest_bigger_than_the_limit_before_decoding_it(
    module_server: Server, tmp_path: Path, pushed: Path
) -> None:
    raw = b'{"files":[],"format":"modelarc.manifest","version":1,"pad":"' + b" " * MAX_MANIFEST_BYTES + b'"}'
    big, blob = _stored(tmp_path, raw)
    del raw
    rewrite = _offering({big: blob}, lambda doc: doc.update(snapshot=f"sha256:{big}"))
    bob, said = _pull(module_server, tmp_path, pushed, rewrite, ok=False)
    assert f"{MAX_MANIFEST_BYTES:,}" in said
    assert big not in object_files(bob.path / "store")


def test_a_manifest_is_not_parsed_before_a_trusted_bundle_signs_it(
    module_server: Server, tmp_path: Path, pushed: Path
) -> None:
    """The offered manifest is no JSON at all: the honest bundles sign another snapshot, and that is the refusal."""
    bogus, blob = _stored(tmp_path, b"[" * 4096)
    rewrite = _offering({bogus: blob}, lambda doc: doc.update(snapshot=f"sha256:{bogus}"))
    _bob, said = _pull(module_server, tmp_path, pushed, rewrite, ok=False)
    assert "signature is for snapshot" in said
    assert "malformed manifest" not in said


def test_a_push_check_refuses_a_bundle_bigger_than_a_bundle_may_hold(
    module_server: Server, alice: Home
) -> None:
    """The server runs the same checks on what a pusher uploaded (``POST /v1/transfer/check``)."""
    with alice.archive() as archive:
        pusher = HostilePusher(archive, module_server.url, module_server.push_token)
        junk = pusher.put_bytes(bytes(MAX_BUNDLE_BYTES + 1))
        from modelarc.archive.remote.offers import offer_for

        doc = offer_for(archive, "acme/m:v1")[0].to_json()
    doc["signatures"] = [*doc["signatures"], junk]
    answer = pusher.http.post("/v1/transfer/check", json=doc)
    assert answer.status_code >= 400, answer.text
    assert f"{MAX_BUNDLE_BYTES:,}" in answer.text
