"""What a training-data manifest may hold is checked when it is parsed, before anything is archived; a manifest this
archive already recorded is read as leniently as when it was attached, so a rebuild still replays it."""

from __future__ import annotations

import pytest

from modelarc.archive.provenance.data import parse_data_manifest
from modelarc.errors import DataManifestError

DUPLICATED = b"version: 1\ndatasets: [{name: a, role: eval}]\nversion: 1\n"
BACKWARDS = b"version: 1\ndatasets: [{name: a, role: eval, time_range: {start: '2020', end: '2010'}}]\n"
NUL = b'version: 1\ndatasets: [{name: "a\\0b", role: eval}]\n'
# the schema's '^[0-9a-f]{64}$' under Python's re.search, where '$' also matches before a final newline
SHA_NEWLINE = b'{"version": 1, "datasets": [{"name": "a", "role": "eval", "sha256": "' + b"a" * 64 + b'\\n"}]}'


@pytest.mark.parametrize("raw", [b"[" * 100_000, b"- " * 100_000 + b"x\n", b"{a: " * 50_000])
def test_deep_nesting_is_refused_without_recursing(raw: bytes) -> None:
    with pytest.raises(DataManifestError, match="nested more than 32 levels deep"):
        parse_data_manifest(raw, "deep.yaml")


@pytest.mark.parametrize(
    "raw, message",
    [
        (DUPLICATED, "key 'version' is duplicated"),
        (BACKWARDS, "is before start"),
        (NUL, "NUL"),
        (SHA_NEWLINE, r"datasets\[0\]\.sha256: 'a{64}\\n' does not match"),
    ],
    ids=["duplicated key", "end before start", "NUL", "sha256 with a final newline"],
)
def test_what_older_versions_accepted_is_refused_when_given_but_replayed_when_recorded(
    raw: bytes, message: str
) -> None:
    with pytest.raises(DataManifestError, match=message):
        parse_data_manifest(raw, "m.yaml")
    assert parse_data_manifest(raw, "m.yaml", recorded=True).datasets[0]["role"] == "eval"


def test_a_merge_key_overridden_by_its_mapping_is_no_duplicate() -> None:
    raw = b"version: 1\ndatasets: [{<<: {name: a, role: eval}, name: b}]\n"
    assert parse_data_manifest(raw, "m.yaml").datasets[0]["name"] == "b"


def test_a_lone_surrogate_is_refused_even_when_recorded() -> None:
    """No such manifest was ever attached (hashing it failed), so nothing recorded needs it."""
    with pytest.raises(DataManifestError, match="lone UTF-16 surrogate"):
        parse_data_manifest(
            b'{"version": 1, "datasets": [{"name": "\\udcff", "role": "eval"}]}', "m", recorded=True
        )


@pytest.mark.parametrize("field", ['"sha256": "' + "a" * 64, '"time_range": {"start": "2020'])
def test_no_pattern_of_the_schema_lets_a_final_newline_through(field: str) -> None:
    """Every ``pattern`` the shipped schema has (a data hash, a date) matches the whole string, as JSON Schema's
    ECMA-262 regular expressions do."""
    close = "}" if "time_range" in field else ""
    raw = ('{"version": 1, "datasets": [{"name": "a", "role": "eval", ' + field + '\\n"' + close + "}]}").encode()
    with pytest.raises(DataManifestError, match="does not match|is not a valid date"):
        parse_data_manifest(raw, "m.json")
    assert parse_data_manifest(raw.replace(b"\\n", b""), "m.json").datasets[0]["name"] == "a"
