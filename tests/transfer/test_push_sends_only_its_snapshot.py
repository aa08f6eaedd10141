"""A push uploads only the objects of the snapshot it pushes: ids are public, bytes are not, so a remote that names
another local object (a private snapshot's file) in any of its answers gets nothing of it, and the push stops."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hostilekit import RewritingProxy, object_files, serve_proxy
from modelfactory import tiny_tensors, write_model
from transferkit import Home, Server, make_home, trusted_by_server

SECRET = b"TOP SECRET WEIGHTS 1234\n"
SECRET_ID = hashlib.sha256(SECRET).hexdigest()


def _ask_for_secret(where: str) -> Any:
    """A rewrite that names the secret object as missing in the answer to ``where`` (missing, check or commit)."""
    asked = {"done": False}

    def rewrite(method: str, path: str, status: int, headers: dict[str, str], body: bytes) -> Any:
        if where == "missing" and path.endswith("/v1/objects/missing"):
            doc = json.loads(body)
            return status, headers, json.dumps({"missing": [*doc["missing"], SECRET_ID]}).encode()
        if where == "check" and path.endswith("/v1/transfer/check"):
            doc = json.loads(body)
            return status, headers, json.dumps({**doc, "missing": [*doc["missing"], SECRET_ID]}).encode()
        if where == "commit" and path.endswith("/v1/transfer/commit") and not asked["done"]:
            asked["done"] = True  # the first commit answers 409, as after lost leases, naming the secret
            doc = {"detail": "incomplete", "snapshot": "sha256:" + "0" * 64, "missing": [SECRET_ID]}
            return 409, {"content-type": "application/json"}, json.dumps(doc).encode()
        return status, headers, body

    return rewrite


@pytest.fixture
def alice(server: Server, tmp_path: Path) -> Home:
    """A pusher the server trusts, with a private snapshot (never pushed) holding the secret file."""
    home = make_home(tmp_path, "alice")
    trusted_by_server(server, home)
    home("push", write_model(tmp_path / "secret", extra_files={"secret.txt": SECRET}), "private/model:v1")
    assert SECRET_ID in object_files(home.path / "store")  # the object the remote will name
    return home


# (a push asks /v1/objects/missing only about delta bases: its guard against an id not asked about is tested in
# test_remote_answers_bounded.py, test_a_malformed_answer_to_which_objects_it_lacks_is_refused)
@pytest.mark.parametrize("where", ["check", "commit"])
def test_push_refuses_to_upload_an_object_outside_the_snapshot(
    server: Server, alice: Home, tmp_path: Path, where: str
) -> None:
    proxy = RewritingProxy(server.url, rewrite=_ask_for_secret(where))
    with serve_proxy(proxy) as url:
        alice("remote", "add", "evil", url, "--token", server.push_token, "--no-trust-keys")
        model = write_model(tmp_path / "public", tiny_tensors(seed=3))
        alice("push", model, "acme/m:v1")
        result = alice("push", "acme/m:v1", "--remote", "evil", ok=False)
    assert SECRET_ID in result.stderr
    assert "not part of this snapshot" in result.stderr
    assert SECRET_ID not in object_files(server.archive.settings.store_path)
    assert not any(r == f"PUT /v1/objects/{SECRET_ID}" for r in proxy.requests)


def test_mirror_sync_to_a_remote_refuses_to_upload_an_object_outside_the_snapshot(
    server: Server, tmp_path: Path
) -> None:
    """A mirror pushes every local snapshot, so the guard is per snapshot: a remote answering one snapshot's check
    with an object of the other (not yet sent) gets nothing of it."""
    home = make_home(tmp_path, "carol")
    trusted_by_server(server, home)
    home("push", write_model(tmp_path / "public", tiny_tensors(seed=3)), "acme/m:v1")
    home("push", write_model(tmp_path / "secret", extra_files={"secret.txt": SECRET}), "private/model:v1")
    proxy = RewritingProxy(server.url, rewrite=_ask_for_secret("check"))
    with serve_proxy(proxy) as url:
        home("remote", "add", "evil", url, "--token", server.push_token, "--no-trust-keys")
        home("mirror", "add", "m", "remote:evil")
        result = home("mirror", "sync", ok=False)
    assert "not part of this snapshot" in result.stderr
    # the first snapshot's own check names the secret too, so it is never sent, even as part of its own snapshot
    assert not any(r == f"PUT /v1/objects/{SECRET_ID}" for r in proxy.requests)
    assert SECRET_ID not in object_files(server.archive.settings.store_path)
