"""A push never archives the archive's own files (archive/own_state.py): its home (the private signing key, the
SQLite catalog and its -wal/-shm), its store and its load cache. A project folder that keeps its archive's home
inside used to be archived with keys/signing-key.pem in it, and a server hands a snapshot's non-weight files to
anyone who may read the model. They are left out with a warning line; a source inside them is refused."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from conftest import ArchiveCli


def _paths(arc: Any, ref: str) -> list[str]:
    return [f["path"] for f in arc.json("show", ref)["files"]]


def _project_with_its_home(tmp_path: Path, database_url: str) -> tuple[ArchiveCli, Path]:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "weights.bin").write_bytes(b"w" * 64)
    arc = ArchiveCli(project / ".modelarc", database_url)
    arc("init")
    assert (project / ".modelarc" / "keys" / "signing-key.pem").is_file()
    return arc, project


def test_a_home_inside_the_pushed_folder_is_left_out_with_a_warning(
    tmp_path: Path, database_url: str
) -> None:
    arc, project = _project_with_its_home(tmp_path, database_url)
    result = arc("push", project, "acme/proj:v1")
    warnings = [ln for ln in result.stderr.splitlines() if ln.startswith("warning: ")]
    assert any(".modelarc" in w and "own files" in w for w in warnings), result.stderr
    assert _paths(arc, "acme/proj:v1") == ["weights.bin"]
    arc("pull", "acme/proj:v1", tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["weights.bin"]


def test_a_link_to_the_signing_key_is_left_out_even_when_links_are_followed(arc: Any, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w" * 64)
    os.symlink(arc.home / "keys" / "signing-key.pem", folder / "key.pem")
    os.symlink(arc.home / "keys", folder / "keys")
    result = arc("push", folder, "acme/m:v1", "--follow-symlinks")
    assert sum("own files" in ln for ln in result.stderr.splitlines()) == 2, result.stderr
    assert _paths(arc, "acme/m:v1") == ["weights.bin"]


def test_pushing_the_home_or_a_file_in_it_is_refused(arc: Any) -> None:
    for source in (arc.home, arc.home / "keys" / "signing-key.pem"):
        result = arc.fail("push", source, "acme/home:v1")
        assert "own files" in result.stderr, result.output
    assert arc.json("ls") == []


def test_a_sqlite_catalog_and_its_side_files_inside_the_pushed_folder_are_left_out(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "weights.bin").write_bytes(b"w" * 64)
    arc = ArchiveCli(tmp_path / "home", f"sqlite:///{project / 'catalog.db'}")
    arc("init")
    # the catalog is open meanwhile: in WAL mode its -wal and -shm files exist too
    result = arc("push", project, "acme/proj:v1")
    skipped = [ln for ln in result.stderr.splitlines() if "own files" in ln]
    for name in ("catalog.db:", "catalog.db-wal:", "catalog.db-shm:"):
        assert any(name in ln for ln in skipped), result.stderr
    assert _paths(arc, "acme/proj:v1") == ["weights.bin"]
