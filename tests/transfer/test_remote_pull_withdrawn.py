"""A pull from a remote of a snapshot this archive withdrew is refused before anything is fetched: its weights would
come back into the store (where gc keeps them for good and a mirror sync copies them out), and the tag would move
onto it, while every local pull of it is refused."""

from __future__ import annotations

from pathlib import Path

from modelfactory import write_model
from transferkit import Server, make_home


def _objects(home_path: Path) -> set[Path]:
    return {p for p in (home_path / "store" / "objects").rglob("*") if p.is_file()}


def test_a_remote_pull_of_a_snapshot_withdrawn_here_is_refused(server: Server, tmp_path: Path) -> None:
    server.archive.push(write_model(tmp_path / "src"), "acme/m:v1")
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url)
    bob("pull", "acme/m:v1", "--remote", "origin")
    bob("rm", "acme/m:v1", "--reason", "licence problem")
    bob("gc")
    before, listed = _objects(bob.path), bob.json("ls")
    for ref in ("acme/m:v1", f"acme/m@{server.archive.resolve('acme/m:v1')[1].digest}"):
        for dest in ([], [str(tmp_path / "out")]):
            result = bob("pull", ref, *dest, "--remote", "origin", ok=False)
            assert result.exit_code == 10, result.output
            assert "was withdrawn on" in result.stderr and "licence problem" in result.stderr
    assert _objects(bob.path) == before
    assert not (tmp_path / "out").exists()
    assert bob.json("ls") == listed and listed[0]["withdrawn"]  # no tag moved, nothing recorded
