"""A pull from a remote may not write into the puller's own archive either (archive/own_state.py): the remote names
the files, and one named `registry.db` pulled with --force into the home replaced the catalog."""

from __future__ import annotations

from pathlib import Path

from modelfactory import write_model
from transferkit import Server, make_home


def test_a_remote_pull_into_the_pullers_home_is_refused(server: Server, tmp_path: Path) -> None:
    folder = write_model(tmp_path / "src")
    (folder / "registry.db").write_bytes(b"not a database")
    server.archive.push(folder, "acme/m:v1")
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url)
    catalog = (bob.path / "registry.db").read_bytes()
    result = bob("pull", "acme/m:v1", bob.path, "--remote", "origin", "--force", ok=False)
    assert result.exit_code == 7 and "inside this archive's own files" in result.stderr, result.output
    assert (bob.path / "registry.db").read_bytes()[:16] == catalog[:16]  # still the SQLite catalog
    bob("ls")
    bob("pull", "acme/m:v1", tmp_path / "out", "--remote", "origin")  # elsewhere: fine
    assert (tmp_path / "out" / "registry.db").read_bytes() == b"not a database"
