"""A configured mirror whose folder is gone (an unmounted disk) is reported and counted as a failure by every command
that reads or repairs, and never made again: only `mirror add` creates a mirror's folder. Made again, it would sit
on whatever disk holds the mount point, take the repair's or sync's copies there, and be called whole."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from modelfactory import tiny_tensors, write_model


def _objects(root: Path) -> list[Path]:
    return sorted(p for p in (root / "objects").rglob("*") if p.is_file())


@pytest.fixture
def unmounted(arc: Any, tmp_path: Path) -> tuple[Path, Path]:
    """A pushed archive with two synced mirrors, ``gone`` (added first, so tried first) and ``kept``; then the
    folder of ``gone`` disappears, as an unmounted disk's does."""
    arc("push", write_model(tmp_path / "m", tiny_tensors()), "acme/m:v1")
    gone, kept = tmp_path / "disk" / "gone", tmp_path / "kept"
    arc("mirror", "add", "gone", gone)
    arc("mirror", "add", "kept", kept)
    assert all(r["ok"] for r in arc.json("mirror", "sync"))
    shutil.rmtree(tmp_path / "disk")
    return gone, kept


def _says_unreachable(result: Any, gone: Path) -> None:
    lines = [ln for ln in result.stderr.splitlines() if "gone" in ln]
    assert len(lines) == 1 and lines[0].startswith("error: mirror gone at ") and str(gone) in lines[0], (
        result.output
    )
    assert "unreachable" in lines[0]


def test_scrub_mirrors_reports_a_missing_mirror_and_still_checks_the_rest(
    arc: Any, unmounted: tuple[Path, Path]
) -> None:
    gone, _kept = unmounted
    result = arc.fail("scrub", "--mirrors", "--json")
    _says_unreachable(result, gone)
    assert not gone.exists() and not gone.parent.exists()
    report = json.loads(result.stdout)
    assert not report["ok"] and set(report["unreachable"]) == {"gone"}
    assert report["mirrors"] == {"kept": {"missing": [], "corrupt": []}}  # re-read there all the same
    assert report["objects_checked"] == len(_objects(arc.home / "store"))
    verified = {m["name"]: m["verified_at"] for m in arc.json("mirror", "ls")}
    assert verified["kept"] is not None and verified["gone"] is None
    text = arc.fail("scrub", "--mirrors")
    _says_unreachable(text, gone)
    assert "damage found" not in text.stdout  # nothing is damaged: a mirror could not be read
    assert not gone.exists()


def test_repair_mends_from_another_mirror_and_never_recreates_a_missing_one(
    arc: Any, unmounted: tuple[Path, Path]
) -> None:
    gone, _kept = unmounted
    victim = max(_objects(arc.home / "store"), key=lambda p: p.stat().st_size)
    victim.unlink()
    result = arc.fail("repair", "--json")
    _says_unreachable(result, gone)
    assert not gone.exists() and not gone.parent.exists()
    report = json.loads(result.stdout)
    assert report["repaired"] == {victim.name: "kept"} and set(report["unreachable"]) == {"gone"}
    assert arc.json("verify", "--all")["ok"]


def test_repair_with_nothing_to_mend_still_fails_while_a_mirror_is_missing(
    arc: Any, unmounted: tuple[Path, Path]
) -> None:
    gone, _kept = unmounted
    result = arc.fail("repair")
    _says_unreachable(result, gone)
    assert not gone.exists()
    assert "Traceback" not in result.output


def test_mirror_sync_syncs_the_others_and_never_recreates_a_missing_one(
    arc: Any, tmp_path: Path, unmounted: tuple[Path, Path]
) -> None:
    gone, kept = unmounted
    arc("push", write_model(tmp_path / "m2", tiny_tensors(seed=2)), "acme/m:v2")
    result = arc.fail("mirror", "sync", "--json")
    _says_unreachable(result, gone)
    assert not gone.exists() and not gone.parent.exists()
    reports = {r["mirror"]: r for r in json.loads(result.stdout)}
    assert reports["kept"]["ok"] and reports["kept"]["objects_copied"] > 0
    assert not reports["gone"]["ok"] and "unreachable" in reports["gone"]["unreachable"]
    assert sorted(p.name for p in _objects(kept)) == sorted(p.name for p in _objects(arc.home / "store"))
    _says_unreachable(arc.fail("mirror", "sync", "gone"), gone)
    assert not gone.exists()


def test_push_to_a_missing_mirror_is_refused_before_a_byte_is_archived(
    arc: Any, tmp_path: Path, unmounted: tuple[Path, Path]
) -> None:
    gone, _kept = unmounted
    before = arc.json("ls")
    for which in ("gone", "all"):
        result = arc.fail(
            "push",
            write_model(tmp_path / f"m-{which}", tiny_tensors(seed=3)),
            "acme/new:v1",
            "--mirror",
            which,
        )
        _says_unreachable(result, gone)
        assert "nothing was archived" in result.stderr
        assert not gone.exists()
        assert arc.json("ls") == before
    arc("push", write_model(tmp_path / "m-kept", tiny_tensors(seed=3)), "acme/new:v1", "--mirror", "kept")


def test_mirror_ls_names_a_missing_mirror_without_making_it(arc: Any, unmounted: tuple[Path, Path]) -> None:
    gone, _kept = unmounted
    states = {m["name"]: m for m in arc.json("mirror", "ls")}
    assert "unreachable" in states["gone"]["error"] and str(gone) in states["gone"]["error"]
    assert states["kept"]["error"] is None
    assert not gone.exists()


def test_an_empty_mount_point_is_not_taken_for_the_mirror(arc: Any, unmounted: tuple[Path, Path]) -> None:
    """The disk is unmounted but its mount point stays, an empty folder: neither sync nor repair copies into it."""
    gone, _kept = unmounted
    gone.mkdir(parents=True)
    for args in (("mirror", "sync"), ("scrub", "--mirrors"), ("repair",)):
        result = arc.fail(*args)
        _says_unreachable(result, gone)
        assert "empty" in result.stderr
        assert list(gone.iterdir()) == []
