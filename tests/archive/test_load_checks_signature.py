"""A load checks the snapshot's signature as a pull does: every byte was already checked against its object id,
but a snapshot whose only key was distrusted since, or whose signature bundle is gone, loaded without a word while
`pull` and `verify` refused it."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelfactory import write_model

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.loading import load_state_dict, open_snapshot
from modelarc.errors import IntegrityError, SignatureError
from modelarc.storage import ObjectId


@pytest.fixture
def pushed(archive: Archive, tmp_path: Path) -> Archive:
    archive.push(write_model(tmp_path / "src"), "acme/m:v1")
    assert load_state_dict(archive, "acme/m:v1", device="cpu")  # loads while signed by a trusted key
    return archive


def _own_fingerprint(archive: Archive) -> str:
    (key,) = [k for k in archive.list_keys() if k.trusted]
    return key.fingerprint


@pytest.mark.parametrize("cache", [False, True])
def test_a_snapshot_whose_key_was_distrusted_does_not_load(pushed: Archive, cache: bool) -> None:
    pushed.set_key_trust(_own_fingerprint(pushed), False)
    with pytest.raises(SignatureError):
        load_state_dict(pushed, "acme/m:v1", device="cpu", cache=cache)
    with pytest.raises(SignatureError):
        open_snapshot(pushed, "acme/m:v1")


def test_a_snapshot_whose_signature_bundle_is_gone_does_not_load(pushed: Archive) -> None:
    _ref, snap = pushed.resolve("acme/m:v1")
    for oid in pushed.signature_object_ids(snap):
        pushed.store.delete(ObjectId(oid))
    with pytest.raises((SignatureError, IntegrityError)):
        load_state_dict(pushed, "acme/m:v1", device="cpu")
