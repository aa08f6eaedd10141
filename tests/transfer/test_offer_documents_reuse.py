"""A pusher's right to the objects its offer names as signature bundles and data manifests comes first.

The receiver reads those objects to check the offer (a bundle is verified, a data manifest parsed and validated),
and its answer says what it found: a schema error quotes the document's keys. A review found that a push token could
name an object of a gated model there and make the server parse it before judging whether the token may reuse it
(``reusable_objects``: it may read it here, or uploaded it in this push). Now both `/v1/transfer/check` and
`/v1/transfer/commit` refuse such an object as not the token's to reuse (409, as any other) before reading it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hostilekit import HostilePusher
from modelfactory import tiny_tensors, write_model
from transferkit import Server, make_home, trusted_by_server

from modelarc.archive.access import set_policy
from modelarc.archive.remote.offers import offer_for
from modelarc.archive.repository import Archive
from modelarc.storage import ObjectId

SECRET_KEY = "withheld_field_name"  # in a gated model's weight file, which a schema error would quote


def _gated_weight_object(server: Server, tmp_path: Path, weights: bytes | None = None) -> str:
    """A withheld object: a gated model's `.bin` weight file (JSON text, so a parse of it says something)."""
    weights = weights or json.dumps({"version": 1, "datasets": [], SECRET_KEY: 1}).encode()
    folder = write_model(tmp_path / "secret", tiny_tensors(seed=7), extra_files={"weights.bin": weights})
    server.archive.push(folder, "acme/secret:v1")
    set_policy(server.archive, "acme/secret", "gated", reason="the authors' licence")
    _r, snap = server.archive.resolve("acme/secret:v1")
    withheld = next(f for f in server.archive.manifest(snap).files if f.path == "weights.bin")
    return str(withheld.parts[0].chunks[0].id)


def _offer_naming(
    server: Server, tmp_path: Path, field: str, secret: str
) -> tuple[HostilePusher, dict[str, Any]]:
    """An honest offer of the pusher's own snapshot, every object uploaded, naming ``secret`` in ``field``."""
    alice = make_home(tmp_path, "alice")
    trusted_by_server(server, alice)
    alice("push", write_model(tmp_path / "own", tiny_tensors(seed=8)), "alice/own:v1")
    archive = Archive.open(alice.path)
    pusher = HostilePusher(archive, server.url, server.push_token)
    offer, manifest = offer_for(archive, "alice/own:v1")
    ids = {str(ObjectId(offer.snapshot.hex)), *offer.signatures}
    ids |= {str(c.id) for f in manifest.files for p in f.parts for c in p.chunks}
    for oid in sorted(ids):
        assert pusher.upload(oid).status_code in (200, 201)
    doc = offer.to_json()
    doc[field] = [*doc.get(field, []), secret]
    return pusher, doc


# both read an offer's bundles (to verify them) and the data manifests already present (to validate them)
@pytest.mark.parametrize(
    ("route", "field"),
    [("check", "signatures"), ("commit", "signatures"), ("check", "data"), ("commit", "data")],
)
def test_an_unreadable_object_named_as_a_document_of_the_offer_is_refused_unread(
    server: Server, tmp_path: Path, route: str, field: str
) -> None:
    secret = _gated_weight_object(server, tmp_path)
    pusher, doc = _offer_naming(server, tmp_path, field, secret)
    answer = pusher.http.post(f"/v1/transfer/{route}", json=doc)
    assert answer.status_code == 409, answer.text
    assert "not this token's to reuse" in answer.text and secret in answer.text
    assert SECRET_KEY not in answer.text
    assert "alice/own" not in pusher.http.get("/v1/models").text  # nothing was recorded
