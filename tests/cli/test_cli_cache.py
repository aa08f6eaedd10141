"""`modelarc cache ls` and `cache clear`: the sizes they report are the files on disk, and clearing frees them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from modelfactory import tiny_llama

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.models import load_model

ArchiveCli = Any  # tests/cli/conftest.py


@pytest.fixture
def cached(arc: ArchiveCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Two models of different sizes pushed and loaded once each with cache=True (through the Python API)."""
    refs = []
    for seed, layers in ((0, 1), (1, 3)):
        folder = tiny_llama(tmp_path / f"m{seed}", seed=seed, layers=layers)
        arc("push", folder, f"acme/m{seed}:v1", "--no-progress")
        refs.append(f"acme/m{seed}:v1")
    monkeypatch.setenv("MODELARC_DATABASE_URL", arc.env["MODELARC_DATABASE_URL"])
    with Archive.open(arc.home) as archive:
        for ref in refs:
            load_model(archive, ref, device="cpu", cache=True)
    return refs


def _bytes_on_disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.parent.name == "files")


def test_ls_sizes_add_up_to_the_files_on_disk(arc: ArchiveCli, cached: list[str]) -> None:
    listing = arc.json("cache", "ls")
    assert len(listing["entries"]) == 2
    assert {e["model"] for e in listing["entries"]} == {"acme/m0", "acme/m1"}
    assert listing["bytes"] == sum(e["bytes"] for e in listing["entries"])
    assert listing["bytes"] == _bytes_on_disk(Path(listing["path"]))
    assert listing["entries"][0]["bytes"] != listing["entries"][1]["bytes"]
    assert listing["max_bytes"] is None and listing["temp_folders"] == 0
    assert Path(listing["path"]) == arc.home / "cache"
    text = arc("cache", "ls").stdout
    assert "2 snapshots" in text and "acme/m0" in text and "acme/m1" in text


def test_clear_one_ref_frees_its_entry_only(arc: ArchiveCli, cached: list[str]) -> None:
    before = arc.json("cache", "ls")
    digest = arc.json("show", cached[0])["snapshot"]
    out = arc.json("cache", "clear", cached[0])
    (removed,) = out["removed"]
    assert removed["snapshot"] == digest
    after = arc.json("cache", "ls")
    assert out["bytes_freed"] == removed["bytes"] == before["bytes"] - after["bytes"]
    assert [e["model"] for e in after["entries"]] == ["acme/m1"]
    assert after["bytes"] == _bytes_on_disk(Path(after["path"]))
    assert "not in the load cache" in arc("cache", "clear", cached[0]).stdout  # clearing twice is no error


def test_clear_all_frees_everything(arc: ArchiveCli, cached: list[str]) -> None:
    before = arc.json("cache", "ls")
    (arc.home / "cache" / "tmp" / "fill-left-by-a-killed-load").mkdir()
    (arc.home / "cache" / "tmp" / "fill-left-by-a-killed-load" / "part").write_bytes(b"x" * 100)
    assert arc.json("cache", "ls")["temp_bytes"] == 100
    out = arc.json("cache", "clear", "--all")
    assert out["bytes_freed"] == before["bytes"] + 100
    after = arc.json("cache", "ls")
    assert after["entries"] == [] and after["bytes"] == 0 and after["temp_folders"] == 0
    assert not [p for p in (arc.home / "cache").rglob("*") if p.is_file()]


def test_ls_of_an_empty_cache(arc: ArchiveCli) -> None:
    assert arc.json("cache", "ls")["entries"] == []
    assert "0 snapshots, 0 B" in arc("cache", "ls").stdout


@pytest.mark.parametrize(
    "args",
    [
        ["cache", "clear", "acme/nothing:v1"],
        ["cache", "clear", "not a ref"],
        ["cache", "clear"],
        ["cache", "clear", "acme/nothing:v1", "--all"],
    ],
    ids=["unknown-ref", "malformed-ref", "neither", "both"],
)
def test_bad_input_gives_one_line_and_a_non_zero_exit(arc: ArchiveCli, args: list[str]) -> None:
    arc.fail(*args)


def test_a_bad_cap_gives_one_line(arc: ArchiveCli) -> None:
    arc.env["MODELARC_CACHE_MAX_BYTES"] = "lots"
    result = arc.fail("cache", "ls")
    assert "MODELARC_CACHE_MAX_BYTES" in result.stderr


def test_ls_reports_the_cap_and_a_cache_dir_of_its_own(arc: ArchiveCli, tmp_path: Path) -> None:
    arc.env["MODELARC_CACHE_MAX_BYTES"] = "2GB"
    arc.env["MODELARC_CACHE_DIR"] = str(tmp_path / "elsewhere")
    listing = arc.json("cache", "ls")
    assert listing["max_bytes"] == 2 * 10**9 and listing["path"] == str(tmp_path / "elsewhere")
    assert "of 2.0 GB" in arc("cache", "ls").stdout
