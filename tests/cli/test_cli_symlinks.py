"""Symlinks in a pushed folder: what is archived is an explicit choice, and anything left out is said."""

import os
from pathlib import Path

from modelfactory import write_model


def _objects(home: Path) -> list[Path]:
    return sorted(p for p in (home / "store" / "objects").rglob("*") if p.is_file())


def _paths(arc, ref: str) -> list[str]:
    return [f["path"] for f in arc.json("show", ref)["files"]]


def test_link_to_a_file_outside_is_refused_by_default(arc, tmp_path: Path, catalog_snapshot) -> None:
    (tmp_path / "secret.txt").write_text("not part of the model\n")
    src = write_model(tmp_path / "m")
    os.symlink(tmp_path / "secret.txt", src / "notes.txt")
    before, objects = catalog_snapshot(), _objects(arc.home)
    result = arc.fail("push", src, "acme/tiny:v1")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "notes.txt" in lines[0] and "outside" in lines[0] and "--follow-symlinks" in lines[0]
    assert catalog_snapshot() == before and _objects(arc.home) == objects


def test_follow_symlinks_archives_a_link_outside_as_its_content(arc, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("shared notes\n")
    src = write_model(tmp_path / "m")
    os.symlink(tmp_path / "secret.txt", src / "notes.txt")
    arc("push", src, "acme/tiny:v1", "--follow-symlinks")
    arc("pull", "acme/tiny:v1", tmp_path / "out")
    out = tmp_path / "out" / "notes.txt"
    assert not out.is_symlink() and out.read_text() == "shared notes\n"


def test_link_to_a_file_inside_is_archived_as_its_content(arc, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m")
    os.symlink("config.json", src / "config-copy.json")
    result = arc("push", src, "acme/tiny:v1")
    assert "warning" not in result.stderr
    assert "config-copy.json" in _paths(arc, "acme/tiny:v1")


def test_linked_folder_is_skipped_with_a_warning_by_default(arc, tmp_path: Path) -> None:
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "adapter.bin").write_bytes(b"adapter")
    src = write_model(tmp_path / "m")
    os.symlink(tmp_path / "extra", src / "extra")
    os.symlink(tmp_path / "gone", src / "dangling")
    result = arc("push", src, "acme/tiny:v1")
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning: ")]
    assert any("extra" in w and "--follow-symlinks" in w for w in warnings), result.stderr
    assert any("dangling" in w and "broken" in w for w in warnings), result.stderr
    assert not [p for p in _paths(arc, "acme/tiny:v1") if p.startswith(("extra", "dangling"))]


def test_follow_symlinks_follows_a_linked_folder(arc, tmp_path: Path) -> None:
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "adapter.bin").write_bytes(b"adapter")
    src = write_model(tmp_path / "m")
    os.symlink(tmp_path / "extra", src / "extra")
    arc("push", src, "acme/tiny:v1", "--follow-symlinks")
    assert "extra/adapter.bin" in _paths(arc, "acme/tiny:v1")


def test_follow_symlinks_refuses_a_loop_and_names_it(arc, tmp_path: Path, catalog_snapshot) -> None:
    src = write_model(tmp_path / "m", extra_files={"sub/a.txt": b"a"})
    os.symlink("..", src / "sub" / "up")
    before, objects = catalog_snapshot(), _objects(arc.home)
    result = arc.fail("push", src, "acme/tiny:v1", "--follow-symlinks")
    assert "sub/up" in result.stderr and "loop" in result.stderr
    assert catalog_snapshot() == before and _objects(arc.home) == objects
    arc("push", src, "acme/tiny:v1")  # without following, the loop is only reported
