"""Training-data manifests come from users and from other archives: parsing them must stay cheap and bounded."""

from __future__ import annotations

import pytest

from modelarc.archive.provenance.data import MAX_DATA_MANIFEST_BYTES, parse_data_manifest
from modelarc.errors import DataManifestError

VALID = b"version: 1\ndatasets:\n  - {name: the-pile, version: '1.0', role: pretrain}\n"


def test_a_valid_manifest_parses() -> None:
    assert parse_data_manifest(VALID, "m.yaml").datasets[0]["name"] == "the-pile"


def test_yaml_aliases_are_refused_before_any_expansion() -> None:
    bomb = b'version: 1\na: &a ["x","x","x","x","x","x","x","x","x"]\n'
    for i in range(1, 12):
        bomb += f"{'b' * i}: &{'b' * i} [*{'b' * (i - 1) if i > 1 else 'a'}]\n".encode()
    with pytest.raises(DataManifestError, match="aliases"):
        parse_data_manifest(bomb, "bomb.yaml")


def test_an_oversized_manifest_is_refused_unread() -> None:
    with pytest.raises(DataManifestError, match="at most"):
        parse_data_manifest(VALID + b"#" * MAX_DATA_MANIFEST_BYTES, "big.yaml")
