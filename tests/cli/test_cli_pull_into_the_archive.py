"""No file a command writes for the user lands in the archive's own places (archive/own_state.py): a snapshot
holding `registry.db`, pulled with --force into the home, replaced the catalog, and a pull into the store could add
records a rebuild replays. The same for --signature and export -o, and for a pull from a remote."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from modelfactory import write_model


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def hostile(arc: Any, tmp_path: Path) -> Any:
    """``arc`` holding acme/m:v1, a snapshot with a file named like the catalog."""
    folder = write_model(tmp_path / "src")
    (folder / "registry.db").write_bytes(b"not a database")
    arc("push", str(folder), "acme/m:v1")
    return arc


def _through_a_missing_folder(path: Path, above: Path | None = None) -> str:
    """``path`` spelled through a folder that does not exist yet, made beside ``above`` (by default ``path``
    itself): the OS goes where ``path`` is once the write has made that folder, so every check must too
    (appending the missing rest as typed, the checks saw a path outside the home)."""
    above = above or path
    return str(above.parent / "nosuch" / ".." / path.relative_to(above.parent))


@pytest.mark.parametrize("spelling", ["plain", "through-a-missing-folder"])
@pytest.mark.parametrize("where", ["", "store", "store/records", "keys", "cache/sub"])
def test_a_pull_into_the_archive_is_refused_and_changes_nothing(hostile: Any, where: str, spelling: str) -> None:
    home = hostile.home
    before = _digests(home)
    dest = home / where if where else home
    said = str(dest) if spelling == "plain" else _through_a_missing_folder(dest, above=home)
    result = hostile.fail("pull", "acme/m:v1", said, "--force")
    assert result.exit_code == 7, result.output
    assert "inside this archive's own files" in result.stderr, result.output
    assert _digests(home) == before
    assert [s["model"] for s in hostile.json("ls")] == ["acme/m"]  # the catalog still opens


@pytest.mark.parametrize("spelling", ["plain", "through-a-missing-folder"])
def test_the_signature_and_an_export_may_not_land_in_the_archive(
    hostile: Any, tmp_path: Path, spelling: str
) -> None:
    home = hostile.home
    before = _digests(home)

    def said(path: Path) -> str:
        return str(path) if spelling == "plain" else _through_a_missing_folder(path, above=home)

    for target in (home / "registry.db", home / "keys" / "signing-key.pem"):
        sig = hostile.fail("pull", "acme/m:v1", str(tmp_path / "out"), "--signature", said(target), "--force")
        assert sig.exit_code == 7 and "inside this archive's own files" in sig.stderr, sig.output
        assert not (tmp_path / "out").exists()  # refused before any file was written
    exported = hostile.fail(
        "export", "acme/m:v1", "--format", "model-card", "-o", said(home / "registry.db"), "--force"
    )
    assert exported.exit_code == 7 and "inside this archive's own files" in exported.stderr, exported.output
    assert _digests(home) == before


def test_a_pull_beside_the_archive_still_works(hostile: Any, tmp_path: Path) -> None:
    hostile("pull", "acme/m:v1", str(tmp_path / "elsewhere"))
    assert (tmp_path / "elsewhere" / "registry.db").read_bytes() == b"not a database"


def test_a_symlinked_folder_in_dest_is_refused_however_dest_is_spelled(arc: Any, tmp_path: Path) -> None:
    """A folder of DEST that is a symlink out of it is refused (archive/restore.py), DEST spelled plainly or
    through a folder that does not exist yet."""
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("written where?")
    arc("push", str(folder), "acme/links:v1")
    dest = tmp_path / "d"
    dest.mkdir()
    (tmp_path / "outside").mkdir()
    (dest / "sub").symlink_to(tmp_path / "outside")
    for said in (str(dest), _through_a_missing_folder(dest)):
        result = arc.fail("pull", "acme/links:v1", said)
        assert result.exit_code == 7 and "would land outside" in result.stderr, result.output
    assert list((tmp_path / "outside").iterdir()) == []
