"""An offer stating a date that has not come yet, or a release before its cutoff, is refused by a server receiving
the push and by a puller receiving the offer (before any weight moves), naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hostilekit import HostilePusher, RewritingProxy, object_files, rewriting_offer, serve_proxy
from modelfactory import write_model
from transferkit import Server, make_home, trusted_by_server

from modelarc.archive.repository import Archive
from modelarc.errors import NotFoundError

LIES: dict[str, tuple[dict[str, Any], str]] = {
    "cutoff in 2099": ({"cutoff": "2099-12-31", "cutoff_precision": "day"}, "cutoff: cutoff 2099-12-31"),
    "release in 2098": ({"release_date": "2098-01-01"}, "release_date: release date 2098-01-01"),
    "released before the cutoff": (
        {"cutoff": "2024-06-01", "cutoff_precision": "month", "release_date": "2024-05-15"},
        "is before the training cutoff 2024-06-01",
    ),
}


@pytest.mark.parametrize(("provenance", "said"), LIES.values(), ids=LIES.keys())
def test_a_server_refuses_a_pushed_offer_with_an_impossible_date(
    server: Server, tmp_path: Path, provenance: dict[str, Any], said: str
) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("push", write_model(tmp_path / "m"), "acme/m:v1")
    pusher = HostilePusher(Archive.open(alice.path), server.url, server.push_token)
    answer = pusher.commit_restated("acme/m:v1", lambda offer: offer.update(provenance=provenance))
    assert answer.status_code == 400, answer.text
    assert said in answer.json()["detail"]
    with pytest.raises(NotFoundError):
        server.archive.resolve("acme/m:v1")


@pytest.mark.parametrize(("provenance", "said"), LIES.values(), ids=LIES.keys())
def test_a_puller_refuses_an_offer_with_an_impossible_date_before_any_weight_moves(
    server: Server, tmp_path: Path, provenance: dict[str, Any], said: str
) -> None:
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("remote", "add", "origin", server.url, "--token", server.push_token)
    alice("push", write_model(tmp_path / "m"), "acme/m:v1", "--remote", "origin")
    restate = rewriting_offer(lambda doc: doc.update(provenance=provenance))
    with serve_proxy(RewritingProxy(server.url, rewrite=restate)) as url:
        bob = make_home(tmp_path, "bob")
        bob("remote", "add", "evil", url)
        before = object_files(bob.path / "store")
        result = bob("pull", "acme/m:v1", "--remote", "evil", ok=False)
    assert said in result.stderr
    assert object_files(bob.path / "store") == before
    assert bob.json("ls") == []
