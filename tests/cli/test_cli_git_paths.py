"""A ``.git`` path, in any case and however it is reached (a link named ``.git`` to a file in the folder, a single
file named ``.git``, a link ``.GIT`` to a folder followed with --follow-symlinks), is never archived: every pull
refuses to write one (it is git metadata), so a snapshot holding one could be verified but never restored."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from modelfactory import write_model


def _paths(arc: Any, ref: str) -> list[str]:
    return [f["path"] for f in arc.json("show", ref)["files"]]


def _pushed_and_pulled(arc: Any, src: Path, ref: str, tmp_path: Path, *options: str) -> str:
    """Push ``src`` as ``ref`` and pull it back; the push's stderr."""
    result = arc("push", src, ref, *options)
    assert not [p for p in _paths(arc, ref) if any(seg.lower() == ".git" for seg in p.split("/"))]
    arc("pull", ref, tmp_path / "out")
    return str(result.stderr)


def test_a_link_named_dot_git_to_a_file_in_the_folder_is_skipped_with_a_warning(
    arc: Any, tmp_path: Path
) -> None:
    src = write_model(tmp_path / "m")
    os.symlink("config.json", src / ".git")
    stderr = _pushed_and_pulled(arc, src, "acme/linkgit:v1", tmp_path)
    assert any(
        ".git" in ln and "git metadata" in ln for ln in stderr.splitlines() if ln.startswith("warning: ")
    )


def test_a_link_named_dot_git_in_capitals_to_a_folder_is_skipped_even_when_links_are_followed(
    arc: Any, tmp_path: Path
) -> None:
    src = write_model(tmp_path / "m")
    (src / "sub").mkdir()
    (src / "sub" / "HEAD").write_text("ref: refs/heads/main\n")
    os.symlink("sub", src / ".GIT")
    stderr = _pushed_and_pulled(arc, src, "acme/dirgit:v1", tmp_path, "--follow-symlinks")
    assert any(".GIT" in ln and "git metadata" in ln for ln in stderr.splitlines())
    assert "sub/HEAD" in _paths(arc, "acme/dirgit:v1")  # the folder itself, under its own name, is archived


def test_a_single_file_named_dot_git_is_refused(arc: Any, tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / ".git").write_text("gitdir: /elsewhere\n")
    result = arc.fail("push", tmp_path / "c" / ".git", "acme/filegit:v1")
    assert "git metadata" in result.stderr
    assert arc.json("ls") == []


def test_a_real_dot_git_file_in_any_case_is_still_skipped(arc: Any, tmp_path: Path) -> None:
    src = write_model(tmp_path / "m")
    (src / ".Git").write_text("gitdir: /elsewhere\n")
    stderr = _pushed_and_pulled(arc, src, "acme/casegit:v1", tmp_path)
    assert "git metadata" in stderr
