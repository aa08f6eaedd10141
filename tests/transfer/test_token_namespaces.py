"""Push tokens limited to namespaces (`token create --scope push --namespace NS`), against a real server on 127.0.0.1.

A limited token may record snapshots and move tags only under its namespaces; anything else is refused (403, before
anything is leased, recorded or moved), at the transfer check and at the commit. A token made without
`--namespace`, and an admin token, still reach every namespace.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
from modelfactory import finetune, tiny_tensors, write_model
from sqlalchemy import select
from transferkit import Server, make_home, trusted_by_server

from modelarc.archive.remote.offers import offer_for
from modelarc.archive.tokens import create_token
from modelarc.registry.queries import audit_events
from modelarc.registry.store_models import ObjectLease


def _tag(server: Server, ref: str) -> str:
    return str(server.archive.resolve(ref)[1].digest)


def _commits(server: Server) -> int:
    with server.archive.catalog.session() as s:
        return len(audit_events(s, action="transfer.commit", limit=1000))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _served_pair(server: Server, tmp_path: Path) -> tuple[str, str]:
    """acme/pub:v1 and alice/m:v1 on the server, two different snapshots signed by its own (trusted) key."""
    server.archive.push(write_model(tmp_path / "pub"), "acme/pub:v1")
    tuned = write_model(tmp_path / "tuned", finetune(tiny_tensors(), ["model.layers.0.mlp.weight"]))
    server.archive.push(tuned, "alice/m:v1")
    assert _tag(server, "acme/pub:v1") != _tag(server, "alice/m:v1")
    return _tag(server, "acme/pub:v1"), _tag(server, "alice/m:v1")


def test_limited_token_pushes_into_its_namespace_and_cli_push_elsewhere_is_one_line_403(
    server: Server, tmp_path: Path
) -> None:
    server.archive.push(write_model(tmp_path / "pub"), "acme/pub:v1")
    before = _tag(server, "acme/pub:v1")
    token = create_token(server.archive, "push", "alice", ["alice"]).token
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", token)
    model = write_model(tmp_path / "m", finetune(tiny_tensors(), ["model.layers.1.mlp.weight"]))

    pushed = alice.json("push", model, "alice/m:v1", "--remote", "origin")
    assert _tag(server, "alice/m:v1") == pushed["snapshot"]
    commits = _commits(server)

    # alice archives a model of her own as acme/pub:v1 and pushes it: the server's acme/pub:v1 is not hers to move
    alice("push", model, "acme/pub:v1")
    refused = alice("push", "acme/pub:v1", "--remote", "origin", ok=False)
    lines = [ln for ln in refused.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, refused.stderr
    assert "namespace acme" in lines[0] and "only to namespace alice" in lines[0], lines[0]
    assert _tag(server, "acme/pub:v1") == before  # the other model's tag did not move
    assert _commits(server) == commits  # and nothing was recorded
    assert server.archive.stats().snapshots == 2


def test_raw_commit_outside_the_tokens_namespaces_is_403_and_moves_nothing(
    server: Server, tmp_path: Path
) -> None:
    pub, other = _served_pair(server, tmp_path)
    token = create_token(server.archive, "push", "alice", ["alice", "alice-lab"]).token
    offer, _manifest = offer_for(server.archive, "alice/m:v1")
    hijack = dataclasses.replace(offer, ref="acme/pub:v1").to_json()  # repoint someone else's tag
    snapshots, commits = server.archive.stats().snapshots, _commits(server)

    for route in ("/v1/transfer/check", "/v1/transfer/commit"):
        answer = httpx.post(f"{server.url}{route}", json=hijack, headers=_bearer(token))
        assert answer.status_code == 403, (route, answer.text)
        detail = answer.json()["detail"]
        assert "namespace acme" in detail and "alice, alice-lab" in detail, detail
    assert _tag(server, "acme/pub:v1") == pub
    assert server.archive.stats().snapshots == snapshots and _commits(server) == commits
    with server.archive.catalog.session() as s:  # the check leased nothing to the refused token
        assert s.scalars(select(ObjectLease)).all() == []

    # the same offer under its own namespace is the token's to commit
    mine = dataclasses.replace(offer, ref="alice-lab/m:v2").to_json()
    answer = httpx.post(f"{server.url}/v1/transfer/commit", json=mine, headers=_bearer(token))
    assert answer.status_code in (200, 201), answer.text
    assert _tag(server, "alice-lab/m:v2") == other


def test_unlimited_push_and_admin_tokens_still_reach_every_namespace(server: Server, tmp_path: Path) -> None:
    pub, other = _served_pair(server, tmp_path)
    offer, _manifest = offer_for(server.archive, "alice/m:v1")
    admin = create_token(server.archive, "admin", "root").token
    for token, ref in ((server.push_token, "acme/pub:v1"), (admin, "acme/pub:v2")):
        moved = httpx.post(
            f"{server.url}/v1/transfer/commit",
            json=dataclasses.replace(offer, ref=ref).to_json(),
            headers=_bearer(token),
        )
        assert moved.status_code in (200, 201), moved.text
        assert _tag(server, ref) == other
    assert pub != other


def test_read_token_is_still_refused_as_before(server: Server, tmp_path: Path) -> None:
    _served_pair(server, tmp_path)
    offer, _manifest = offer_for(server.archive, "alice/m:v1")
    answer = httpx.post(
        f"{server.url}/v1/transfer/commit", json=offer.to_json(), headers=_bearer(server.read_token)
    )
    assert answer.status_code == 403 and "pushing needs push" in answer.json()["detail"]


def test_a_push_refused_for_its_namespace_leaves_no_object_on_the_server(server: Server, tmp_path: Path) -> None:
    """The pusher sent the manifest and signature bundle before its first check, which then refused the ref: the
    server kept two objects no snapshot uses. Now nothing is sent before the check."""
    token = create_token(server.archive, "push", "alice", ["alice"]).token
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", token)
    before = set(server.archive.store.iter_ids())
    model = write_model(tmp_path / "new", finetune(tiny_tensors(seed=5), ["model.layers.0.mlp.weight"]))
    refused = alice("push", model, "zzz/m:v1", "--remote", "origin", ok=False)
    assert "only to namespace alice" in refused.stderr, refused.stderr
    assert set(server.archive.store.iter_ids()) == before
    # and a push it may make still sends the documents the check asks for, then the weights
    pushed = alice.json("push", model, "alice/m:v1", "--remote", "origin")
    assert _tag(server, "alice/m:v1") == pushed["snapshot"]
