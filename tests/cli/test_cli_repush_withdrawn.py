"""Pushing the files of a snapshot the model withdrew is refused, not reported as an unchanged snapshot.

Before, `push` of the same files after `rm` and `gc` printed "(unchanged snapshot)" and a stored figure, exited 0
and moved the tag onto the withdrawn snapshot: every pull of that tag then failed, and the weights it had just
written were unreferenced, so the next gc deleted them. No record undoes a withdrawal (docs/FORMAT.md), so the
push is refused with the withdrawal's date and reason, moves no tag, writes no record, and says that what it wrote
is left for gc.
"""

from pathlib import Path

from modelfactory import tiny_tensors, write_model


def _objects(home: Path) -> set[Path]:
    return {p for p in (home / "store" / "objects").rglob("*") if p.is_file()}


def _records(home: Path) -> set[Path]:
    return {p for p in (home / "store" / "records").rglob("*") if p.is_file()}


def test_a_push_of_a_withdrawn_snapshots_files_is_refused_and_gc_frees_what_it_wrote(
    arc, tmp_path: Path
) -> None:
    src = write_model(tmp_path / "m", tiny_tensors(seed=11))
    snap = arc.json("push", src, "acme/m:v1")["snapshot"]
    arc("rm", "acme/m:v1", "--reason", "licence revoked")
    arc("gc")
    objects, records, listed = _objects(arc.home), _records(arc.home), arc.json("ls")

    result = arc.fail("push", src, "acme/m:v9")
    assert result.exit_code == 10, result.output
    err = result.stderr
    assert f"acme/m@{snap}" in err and "withdrawn on" in err and "licence revoked" in err, err
    assert "not archived again" in err and "next gc frees them" in err, err
    assert "stored" not in result.stdout and "unchanged snapshot" not in result.stdout

    assert arc.json("ls") == listed  # no tag v9, nothing recorded
    arc.fail("show", "acme/m:v9")
    assert _records(arc.home) == records
    assert _objects(arc.home) > objects  # the weights it wrote before it knew the snapshot id
    arc("gc")
    assert _objects(arc.home) == objects
    assert arc.json("fsck")["ok"]


def test_the_same_files_under_another_model_are_a_new_snapshot(arc, tmp_path: Path) -> None:
    """Only the model that withdrew the snapshot refuses it: another name is a new snapshot that pulls."""
    src = write_model(tmp_path / "m", tiny_tensors(seed=12))
    arc("push", src, "acme/m:v1")
    arc("rm", "acme/m:v1", "--reason", "wrong name")
    assert arc.json("push", src, "acme/other:v1")["new_snapshot"] is True
    arc("pull", "acme/other:v1", tmp_path / "out")
