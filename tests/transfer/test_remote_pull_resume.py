"""A pull from a remote into a folder that already holds some of the snapshot's files (an interrupted pull) resumes,
as a local pull does: matching files are kept, the rest written, and every object still reaches the store."""

from __future__ import annotations

from pathlib import Path

from modelfactory import write_model
from transferkit import Server, files_of, make_home


def test_a_remote_pull_into_a_folder_holding_matching_files_resumes(server: Server, tmp_path: Path) -> None:
    src = write_model(tmp_path / "src")
    server.archive.push(src, "acme/m:v1")
    out = tmp_path / "out"
    out.mkdir()
    kept = sorted(p for p in src.iterdir() if p.is_file())
    for p in kept[1:]:  # all but one file (the weights among them) there already, as an interrupted pull leaves them
        (out / p.name).write_bytes(p.read_bytes())
    (out / ".modelarc-partial-0123456789abcdef0123456789abcdef").write_bytes(b"half a file")
    bob = make_home(tmp_path, "bob")
    bob("remote", "add", "origin", server.url)
    bob("pull", "acme/m:v1", out, "--remote", "origin")
    assert files_of(out) == files_of(src)  # the temp file is gone, the missing file written
    bob("fsck", "--read-data")  # every object of the kept files was fetched and kept too
    bob("pull", "acme/m:v1", tmp_path / "again")  # from the local store alone
    assert files_of(tmp_path / "again") == files_of(src)
    (out / kept[-1].name).write_bytes(b"different")
    result = bob("pull", "acme/m:v1", out, "--remote", "origin", ok=False)
    assert "differs from the snapshot" in result.stderr and "--force" in result.stderr
