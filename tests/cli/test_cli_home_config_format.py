"""The home's config.json carries its layout's version (docs/FORMAT.md "The home", "Versions"): `init --store` writes
``"format": 1``, a file without the field (every home made before it) reads as format 1, and a larger format, a
newer modelarc's home, is refused by every command in one line, exit 17 as for any newer format, changing nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from modelfactory import write_model

from modelarc.errors import UnsupportedFormatError, UsageError

ArchiveCli = Any  # tests/cli/conftest.py


def _tree(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with a file's bytes (None for a folder): what a refused command must leave alone."""
    out: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            out[os.path.relpath(os.path.join(folder, name), root)] = Path(folder, name).read_bytes()
    return out


def test_init_store_writes_format_1(bare_arc: ArchiveCli, tmp_path: Path) -> None:
    store = tmp_path / "objects"
    bare_arc("init", "--store", store)
    config = bare_arc.home / "config.json"
    assert json.loads(config.read_text()) == {"format": 1, "store": str(store)}
    assert config.read_text() == f'{{\n  "format": 1,\n  "store": "{store}"\n}}\n'  # as FORMAT.md shows it


def test_a_home_config_without_format_reads_as_format_1(bare_arc: ArchiveCli, tmp_path: Path) -> None:
    store = tmp_path / "objects"
    bare_arc("init", "--store", store)
    config = bare_arc.home / "config.json"
    old = json.dumps({"store": str(store)}, indent=2) + "\n"  # what `init --store` wrote before the field existed
    config.write_text(old)
    source = write_model(tmp_path / "m")
    bare_arc("push", source, "acme/m:v1")
    bare_arc("pull", "acme/m:v1", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == (source / "model.safetensors").read_bytes()
    assert list(store.iterdir())  # the objects went where the old file says
    bare_arc("init", "--store", store)  # the same store again: fine
    assert json.loads(config.read_text())["store"] == str(store)


@pytest.mark.parametrize("command", [["init"], ["ls"], ["push", "SOURCE", "acme/m:v2"], ["stats"]])
def test_a_home_config_of_a_newer_format_is_refused_and_nothing_changes(
    arc: ArchiveCli, tmp_path: Path, catalog_snapshot: Any, command: list[str]
) -> None:
    source = write_model(tmp_path / "m")
    arc("push", source, "acme/m:v1")
    catalog = catalog_snapshot()
    config = arc.home / "config.json"
    config.write_text(json.dumps({"format": 2, "store": str(arc.home / "store"), "layout": "future"}, indent=2))
    before = _tree(arc.home)
    result = arc.fail(*[str(source) if a == "SOURCE" else a for a in command])
    assert result.exit_code == UnsupportedFormatError.exit_code == 17
    [line] = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert str(config) in line and "format 2" in line and "newer modelarc" in line, line
    assert _tree(arc.home) == before
    config.write_text(json.dumps({"format": 1, "store": str(arc.home / "store")}))
    assert catalog_snapshot() == catalog  # nothing pushed, nothing recorded


def test_init_of_a_new_home_with_a_newer_config_creates_nothing(bare_arc: ArchiveCli, tmp_path: Path) -> None:
    bare_arc.home.mkdir()
    config = bare_arc.home / "config.json"
    config.write_text(json.dumps({"format": 7, "store": str(tmp_path / "objects")}))
    result = bare_arc.fail("init", "--store", tmp_path / "objects")
    assert result.exit_code == 17 and "format 7" in result.stderr
    assert _tree(bare_arc.home) == {"config.json": config.read_bytes()}
    assert not (tmp_path / "objects").exists()


def test_a_newer_home_is_refused_even_when_the_environment_names_the_store(arc: ArchiveCli) -> None:
    (arc.home / "config.json").write_text(json.dumps({"format": 2}))
    arc.env["MODELARC_STORE_URL"] = str(arc.home / "store")
    assert arc.fail("ls").exit_code == 17


@pytest.mark.parametrize("value", [True, "1", 1.0, 0, -1, None, [1]])
def test_a_home_config_format_that_is_not_a_version_is_a_damaged_file(arc: ArchiveCli, value: object) -> None:
    (arc.home / "config.json").write_text(json.dumps({"format": value}))
    result = arc.fail("ls")
    assert result.exit_code == UsageError.exit_code
    assert '"format" must be a whole number' in result.stderr and "fix it by hand" in result.stderr
