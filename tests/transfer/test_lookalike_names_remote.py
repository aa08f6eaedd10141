"""Model names that differ only in case, against a real server on 127.0.0.1 (catalog on SQLite and PostgreSQL).

A push creating `Acme/tiny` beside the server's `acme/tiny` is refused at the transfer check (before a weight is
sent) and at the commit: 409 `ModelNameClash`, a JSON error naming `acme/tiny`, one line from the CLI. A
namespace-limited token is held to its namespace as spelled. A served mirror records such a snapshot as refused and
copies the rest; a pull from a remote refuses to record one; the server's model routes say "did you mean".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest
from modelfactory import finetune, tiny_tensors, write_model
from sqlalchemy import select
from transferkit import Server, make_home, trusted_by_server

from modelarc.archive.remote.offers import offer_for
from modelarc.archive.tokens import create_token
from modelarc.errors import ModelNameClashError
from modelarc.registry.models import Model
from modelarc.registry.queries import audit_events
from modelarc.storage import ObjectId


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _commits(server: Server) -> int:
    with server.archive.catalog.session() as s:
        return len(audit_events(s, action="transfer.commit", limit=1000))


def _models(server: Server) -> list[str]:
    with server.archive.catalog.session() as s:
        return sorted(m.full_name for m in s.scalars(select(Model)))


def _other_model(tmp_path: Path) -> Path:
    return write_model(tmp_path / "other", finetune(tiny_tensors(), ["model.layers.0.mlp.weight"], seed=7))


def test_a_push_creating_a_lookalike_on_the_server_is_refused_in_one_line(
    server: Server, tmp_path: Path
) -> None:
    server.archive.push(write_model(tmp_path / "tiny"), "acme/tiny:v1")
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    alice("push", _other_model(tmp_path), "Acme/tiny:v1")  # alice's own archive has no acme/tiny
    commits = _commits(server)
    with alice.archive() as a:  # the weight objects the server lacks: none may arrive
        manifest = a.manifest(a.resolve("Acme/tiny:v1")[1])
    weights = [oid for oid in manifest.object_ids() if not server.archive.store.has(oid)]
    assert weights

    refused = alice("push", "Acme/tiny:v1", "--remote", "origin", ok=False)
    assert refused.exit_code == 2, refused.output
    [line] = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert "Acme/tiny" in line and "this archive has acme/tiny" in line, line
    assert "differs only in case" in line, line
    # nothing recorded; no weight was sent either (refused at the check: only the manifest and bundle were)
    assert _models(server) == ["acme/tiny"] and _commits(server) == commits
    assert server.archive.stats().snapshots == 1
    assert not any(server.archive.store.has(oid) for oid in weights)

    # the wire answer, at the check and at the commit: 409 with a JSON error naming the archived spelling
    with alice.archive() as a:
        offer, _manifest = offer_for(a, "Acme/tiny:v1")
    for route in ("/v1/transfer/check", "/v1/transfer/commit"):
        answer = httpx.post(f"{server.url}{route}", json=offer.to_json(), headers=_bearer(server.push_token))
        assert answer.status_code == 409, (route, answer.text)
        assert answer.headers["X-Error-Code"] == "ModelNameClash"
        assert "this archive has acme/tiny" in answer.json()["detail"], answer.text
    assert _models(server) == ["acme/tiny"] and _commits(server) == commits

    # the archived spelling takes the same push
    alice("tag", "Acme/tiny:v1", "v2")
    with alice.archive() as a:
        offer, _manifest = offer_for(a, "Acme/tiny:v2")
    alice("push", "Acme/tiny:v2", "--remote", "origin", ok=False)  # still refused under alice's spelling
    mine = dataclasses.replace(offer, ref="acme/tiny:v2").to_json()
    answer = httpx.post(f"{server.url}/v1/transfer/check", json=mine, headers=_bearer(server.push_token))
    # past the name check: it asks for the documents it lacks (the refused pushes sent none), and takes them
    assert answer.status_code == 409 and answer.headers["X-Error-Code"] != "ModelNameClash", answer.text
    with alice.archive() as a:
        for oid in answer.json()["missing"]:
            sent = httpx.put(
                f"{server.url}/v1/objects/{oid}",
                content=a.store.get_stored(ObjectId(oid)),
                headers=_bearer(server.push_token),
            )
            assert sent.status_code in (200, 201), sent.text
    answer = httpx.post(f"{server.url}/v1/transfer/check", json=mine, headers=_bearer(server.push_token))
    assert answer.status_code == 200, answer.text


def test_a_token_limited_to_a_namespace_is_held_to_its_spelling(server: Server, tmp_path: Path) -> None:
    server.archive.push(write_model(tmp_path / "tiny"), "acme/tiny:v1")
    token = create_token(server.archive, "push", "acme-ci", ["acme"]).token
    offer, _manifest = offer_for(server.archive, "acme/tiny:v1")

    # another spelling of its namespace is outside it, whatever the archive holds: 403, saying how it is spelled
    for ref in ("Acme/tiny:v1", "ACME/fresh:v1"):
        answer = httpx.post(
            f"{server.url}/v1/transfer/commit",
            json=dataclasses.replace(offer, ref=ref).to_json(),
            headers=_bearer(token),
        )
        assert answer.status_code == 403, answer.text
        detail = answer.json()["detail"]
        assert "only to namespace acme" in detail and "compared as spelled: push as acme/" in detail, detail
    # its own spelling of the namespace passes the token's check, and then meets the rule every pusher meets
    answer = httpx.post(
        f"{server.url}/v1/transfer/commit",
        json=dataclasses.replace(offer, ref="acme/Tiny:v1").to_json(),
        headers=_bearer(token),
    )
    assert answer.status_code == 409 and "this archive has acme/tiny" in answer.json()["detail"], answer.text
    assert _models(server) == ["acme/tiny"]

    # a limit to a spelling the archive holds otherwise could push nothing: refused when the token is made
    with pytest.raises(ModelNameClashError, match="this archive has namespace acme"):
        create_token(server.archive, "push", "shouty", ["ACME"])


def test_a_served_mirror_records_a_lookalike_as_refused_and_copies_the_rest(
    server: Server, tmp_path: Path
) -> None:
    server.archive.push(write_model(tmp_path / "tiny"), "Acme/tiny:v1")
    alice = make_home(tmp_path, "alice")
    alice("push", _other_model(tmp_path), "acme/tiny:v1")
    alice("push", write_model(tmp_path / "ok", tiny_tensors(seed=3)), "zeta/ok:v1")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    alice("mirror", "add", "served", "remote:origin")

    result = alice("mirror", "sync", ok=False)
    refused = [ln for ln in result.output.splitlines() if "REFUSED" in ln]
    assert len(refused) == 1 and "acme/tiny@sha256:" in refused[0], result.output
    assert "this archive has Acme/tiny" in refused[0], result.output
    assert _models(server) == ["Acme/tiny", "zeta/ok"]  # the rest arrived


def test_a_pull_from_a_remote_is_refused_a_name_this_archive_spells_otherwise(
    server: Server, tmp_path: Path
) -> None:
    server.archive.push(write_model(tmp_path / "tiny"), "Acme/tiny:v1")
    bob = make_home(tmp_path, "bob")
    bob("push", _other_model(tmp_path), "acme/tiny:v1")
    bob("remote", "add", "origin", server.url)
    objects = sorted((bob.path / "store" / "objects").rglob("*"))
    refused = bob("pull", "Acme/tiny:v1", tmp_path / "out", "--remote", "origin", ok=False)
    assert refused.exit_code == 2 and "this archive has acme/tiny" in refused.stderr, refused.output
    assert sorted((bob.path / "store" / "objects").rglob("*")) == objects  # refused before a byte was fetched
    assert [r["model"] for r in bob.json("ls")] == ["acme/tiny"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/models/ACME/tiny",
        "/v1/snapshots/ACME/tiny/v1",
        "/api/models/ACME/tiny",
        "/api/models/ACME/tiny/refs",
    ],
)
def test_the_servers_model_routes_say_did_you_mean(server: Server, tmp_path: Path, path: str) -> None:
    server.archive.push(write_model(tmp_path / "tiny"), "acme/tiny:v1")
    answer = httpx.get(f"{server.url}{path}")
    assert answer.status_code == 404, answer.text
    assert "did you mean acme/tiny?" in answer.text, answer.text
