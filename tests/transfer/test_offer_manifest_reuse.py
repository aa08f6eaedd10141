"""The object an offer names as its manifest (its snapshot id) is judged before it is read, like its bundles.

A review found that a push token could set an offer's `snapshot` to the id of a gated model's weight chunk:
`/v1/transfer/check` and `/v1/transfer/commit` parsed that chunk as a manifest and quoted it back (422
"unsupported manifest format ..."), though `GET /v1/objects/{id}` answered that token 403. Now an object that is no
recorded snapshot's manifest must have been sent by the pusher, or be readable by it, before it is read (409 as
for any object the token may not reuse); an honest push, whose client sends its manifest first, is unaffected.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from modelfactory import tiny_tensors, write_model
from test_offer_documents_reuse import _gated_weight_object, _offer_naming
from transferkit import Server

SECRET = "GATED-SECRET-FORMAT"


@pytest.mark.parametrize("route", ["check", "commit"])
def test_a_snapshot_id_naming_an_unreadable_object_is_refused_unread(
    server: Server, tmp_path: Path, route: str
) -> None:
    # a withheld object that parses as JSON with a manifest's keys, whose values an error would quote
    secret = _gated_weight_object(server, tmp_path, json.dumps({"format": SECRET, "version": 42}).encode())
    pusher, doc = _offer_naming(server, tmp_path, "signatures", secret)
    doc["signatures"] = doc["signatures"][:-1]  # an honest offer of its own snapshot ...
    assert pusher.http.get(f"/v1/objects/{secret}").status_code == 403  # (the token may not read the chunk)
    doc["snapshot"] = "sha256:" + secret  # ... but for the snapshot id, the gated chunk's
    answer = pusher.http.post(f"/v1/transfer/{route}", json=doc)
    assert answer.status_code == 409, answer.text
    assert "not this token's to reuse" in answer.text and secret in answer.text
    assert SECRET not in answer.text


def test_an_honest_push_of_a_snapshot_the_server_holds_still_commits(server: Server, tmp_path: Path) -> None:
    """A recorded snapshot's manifest is read without proof (its offer is served to readers): pushing the same
    snapshot under a second tag by a non-admin token needs no upload of it."""
    pusher, doc = _offer_naming(server, tmp_path, "signatures", "")
    doc["signatures"] = doc["signatures"][:-1]
    assert pusher.http.post("/v1/transfer/commit", json=doc).status_code in (200, 201)
    again = pusher.http.post("/v1/transfer/check", json=doc)
    assert again.status_code == 200, again.text


def test_a_pushed_manifest_is_parsed_only_once_a_trusted_key_signs_it(server: Server, tmp_path: Path) -> None:
    """A push token whose key the server does not trust uploads a manifest of its own making (up to 128 MiB of
    JSON, ~1.4 GB to parse) and commits: the commit is refused on its signature before the manifest is read. The
    planted document is no manifest at all, so a parse of it would answer 422 quoting its format."""
    from hostilekit import HostilePusher
    from transferkit import make_home

    from modelarc.archive.repository import Archive

    alice = make_home(tmp_path, "alice")  # never trusted by the server
    alice("push", write_model(tmp_path / "own", tiny_tensors(seed=8)), "alice/own:v1")
    pusher = HostilePusher(Archive.open(alice.path), server.url, server.push_token)
    doc = pusher.offer("alice/own:v1", {"format": "UNSIGNED-NEVER-PARSED", "version": 1, "files": []})
    answer = pusher.commit(doc)
    assert answer.status_code in (401, 403, 422), answer.text
    assert "UNSIGNED-NEVER-PARSED" not in answer.text and "format" not in answer.text.lower(), answer.text
    assert "signature" in answer.text.lower() or "trust" in answer.text.lower(), answer.text
    assert "alice/own" not in pusher.http.get("/v1/models").text
