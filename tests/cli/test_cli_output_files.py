"""A file the user names for a command to write (``pull --signature``, ``export -o``) is checked before the work that
produces it: never a symlink, device or pipe renamed over, never one of the files being pulled, and a place the
system will not let us write in fails before anything else was written."""

import os
from pathlib import Path

import pytest
from modelfactory import write_model


@pytest.fixture
def seeded(arc, tmp_path: Path):
    arc("push", write_model(tmp_path / "good"), "acme/tiny:v1")
    return arc


def test_the_signature_is_not_written_over_a_file_being_pulled(seeded, tmp_path: Path) -> None:
    out = tmp_path / "out"
    for force in ([], ["--force"]):
        result = seeded.fail("pull", "acme/tiny:v1", out, "--signature", out / "model.safetensors", *force)
        assert result.exit_code == 7 and "model.safetensors of the snapshot" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("kind", ["fifo", "dangling-symlink", "symlink-to-file"])
def test_a_place_that_is_not_a_regular_file_is_refused_and_left_as_it_was(seeded, tmp_path: Path, kind: str) -> None:
    place = tmp_path / "place"
    if kind == "fifo":
        os.mkfifo(place)
    elif kind == "dangling-symlink":
        place.symlink_to(tmp_path / "nothing")
    else:
        (tmp_path / "real").write_text("mine")
        place.symlink_to(tmp_path / "real")
    before = os.lstat(place)
    for command in (
        ["pull", "acme/tiny:v1", tmp_path / "out", "--signature", place, "--force"],
        ["export", "acme/tiny:v1", "--format", "cyclonedx", "-o", place, "--force"],
    ):
        result = seeded.fail(*command)
        assert result.exit_code == 7 and "is not a regular file" in result.stderr
    after = os.lstat(place)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert not (tmp_path / "out").exists()
    if kind == "symlink-to-file":
        assert (tmp_path / "real").read_text() == "mine"


def test_a_signature_place_the_system_refuses_fails_before_the_files_are_written(seeded, tmp_path: Path) -> None:
    result = seeded.fail("pull", "acme/tiny:v1", tmp_path / "out", "--signature", "/proc/modelarc-bundle.sig")
    assert result.exit_code == 7 and "cannot write --signature /proc/modelarc-bundle.sig" in result.stderr
    assert not (tmp_path / "out").exists()


def test_export_to_dash_is_standard_output(seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = seeded("export", "acme/tiny:v1", "--format", "cyclonedx", "-o", "-")
    assert result.stdout.lstrip().startswith("{")
    assert not (tmp_path / "-").exists()


def test_no_temp_file_is_left_when_the_command_fails_after_the_checks(seeded, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("mine")  # the restore fails on it, after the bundle's temp file was made
    assert seeded.fail("pull", "acme/tiny:v1", tmp_path / "a-file", "--signature", tmp_path / "b.sig").exit_code == 7
    seeded("pull", "acme/tiny:v1", tmp_path / "out", "--signature", tmp_path / "b.sig")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert (tmp_path / "b.sig").stat().st_size > 0


@pytest.mark.parametrize("name", ["newdir/", "a/x.json/"])
def test_a_place_ending_in_a_slash_names_a_folder_and_is_refused(seeded, tmp_path: Path, name: str) -> None:
    """``Path("newdir/")`` is ``newdir``: `export -o newdir/` wrote a file named newdir where a folder was meant."""
    place = f"{tmp_path}/{name}"
    for command in (
        ["pull", "acme/tiny:v1", tmp_path / "out", "--signature", place],
        ["export", "acme/tiny:v1", "--format", "cyclonedx", "-o", place],
    ):
        result = seeded.fail(*command)
        assert result.exit_code == 2 and "ends in '/', which names a folder" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "newdir").exists() and not (tmp_path / "a").exists()
