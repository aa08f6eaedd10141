"""A training-data manifest is stored as given and read again by every rebuild, and by whatever reads the store
decades on: modelarc reads it as YAML 1.1 (PyYAML's safe loader, docs/FORMAT.md "Training-data manifests"), so a
plain scalar that YAML 1.2 reads otherwise (`017`: 15 or 17; `1:30`: 90 or text) is refused when the user gives the
manifest, with one line naming the key. A manifest attached before the refusal (or received from an archive that
attached it) still reads, and rebuilds, as YAML 1.1 read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from modelfactory import write_model
from recordkit import rebuild

from modelarc.archive.provenance.data import attach_data, parse_data_manifest
from modelarc.archive.repository import Archive
from modelarc.errors import DataManifestError

MANIFEST = "version: 1\ndatasets:\n  - name: corpus\n    role: pretrain\n    {line}\n"

# (the line, the key the error names): each means one thing to YAML 1.1 and another to YAML 1.2
READ_OTHERWISE = {
    "leading-zero octal": ("records: 017", "records: 017 is 15 to YAML 1.1"),
    "sexagesimal": ("tokens: 1:30", "tokens: 1:30 is 90 to YAML 1.1"),
    "binary": ("records: 0b101", "records: 0b101 is 5 to YAML 1.1"),
    "underscores": ("size_bytes: 1_000", "size_bytes: 1_000 is 1000 to YAML 1.1"),
    "yes": ("notes: yes", "notes: yes is True to YAML 1.1"),
    "Off": ("license: Off", "license: Off is False to YAML 1.1"),
    "explicit int tag": ("records: !!int 017", "records: 017 is 15 to YAML 1.1"),
    "1.2's octal": ("notes: 0o17", "notes: 0o17 is '0o17' to YAML 1.1, as modelarc reads it, but 15"),
    "1.2's exponent": ("notes: 1e5", "notes: 1e5 is '1e5' to YAML 1.1, as modelarc reads it, but 100000.0"),
}


@pytest.fixture
def pushed(arc: Any, tmp_path: Path) -> Any:
    arc("push", write_model(tmp_path / "m"), "acme/tiny:v1")
    return arc


def _manifest(tmp_path: Path, line: str) -> Path:
    path = tmp_path / "data.yaml"
    path.write_text(MANIFEST.format(line=line))
    return path


@pytest.mark.parametrize("line, named", list(READ_OTHERWISE.values()), ids=list(READ_OTHERWISE))
def test_attach_refuses_a_scalar_yaml_1_2_reads_otherwise_naming_the_key(
    pushed: Any, tmp_path: Path, line: str, named: str
) -> None:
    result = pushed.fail("data", "attach", "acme/tiny:v1", _manifest(tmp_path, line))
    (error,) = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert error.startswith("error: ") and "line 5: " + named in error and "quote it" in error, error
    assert pushed.json("data", "ls") == []


def test_push_data_refuses_one_and_archives_nothing(arc: Any, tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m")
    result = arc.fail("push", folder, "acme/tiny:v1", "--data", _manifest(tmp_path, "records: 017"))
    assert "records: 017 is 15 to YAML 1.1" in result.stderr
    assert arc.json("ls") == []


def test_a_merge_key_is_refused_when_given(pushed: Any, tmp_path: Path) -> None:
    result = pushed.fail("data", "attach", "acme/tiny:v1", _manifest(tmp_path, "<<: {license: mit}"))
    assert "`<<` merges a mapping in YAML 1.1" in result.stderr


@pytest.mark.parametrize(
    "line", ["records: 17", "records: 0", "notes: '017'", 'notes: "1:30"', "notes: 'yes'"]
)
def test_scalars_both_versions_read_alike_are_attached(pushed: Any, tmp_path: Path, line: str) -> None:
    pushed("data", "attach", "acme/tiny:v1", _manifest(tmp_path, line))
    assert [d["name"] for d in pushed.json("data", "ls")] == ["corpus"]


def test_one_attached_before_still_reads_and_rebuilds_as_yaml_1_1_read_it(
    pushed: Any, tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = MANIFEST.format(line="records: 017").encode()
    with pytest.raises(DataManifestError, match="records: 017 is 15"):
        parse_data_manifest(raw, "data.yaml", given=True)
    # attached as an older modelarc (or a received commit, which parses it the same way) attached it
    with monkeypatch.context() as m:
        m.setenv("MODELARC_DATABASE_URL", pushed.env["MODELARC_DATABASE_URL"])
        with Archive.open(pushed.home) as archive:
            attach_data(archive, "acme/tiny:v1", parse_data_manifest(raw, "data.yaml"))
    assert pushed.json("data", "show", "corpus")[0]["records"] == 15
    report = rebuild(pushed, database_url)
    assert not report.get("refused"), report
    assert pushed.json("data", "show", "corpus")[0]["records"] == 15
