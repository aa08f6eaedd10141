"""A full disk is one line naming where (the store or the pull's destination), and leaves the store consistent."""

from pathlib import Path

from diskfull import FullDisk
from modelfactory import big_model, write_model


def _objects(home: Path) -> list[Path]:
    return sorted(p for p in (home / "store" / "objects").rglob("*") if p.is_file())


def test_push_to_a_full_store_is_one_line_and_changes_nothing(arc, tmp_path, catalog_snapshot) -> None:
    arc("push", write_model(tmp_path / "small"), "acme/small:v1")
    before, objects = catalog_snapshot(), _objects(arc.home)
    src = big_model(tmp_path / "big", megabytes=24)
    with FullDisk(arc.home / "store", capacity=3 * 1024 * 1024) as disk:
        result = arc.fail("push", src, "acme/big:v1")
    assert disk.refused, "the injected disk never filled up"
    assert result.exit_code == 13
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: disk full"), result.stderr
    assert str(arc.home / "store") in lines[0]
    assert catalog_snapshot() == before
    assert not list((arc.home / "store" / "tmp").iterdir())  # no temp file left
    fsck = arc.json(
        "fsck", "--read-data"
    )  # every object under a real name is whole (a few complete ones may be unreferenced)
    assert fsck["ok"] and not fsck["corrupt"] and not fsck["missing"]
    assert set(objects) <= set(_objects(arc.home))
    arc.json("push", src, "acme/big:v1")  # once there is room, the same push succeeds
    arc("verify", "acme/big:v1")


def test_pull_into_a_full_folder_is_one_line_and_leaves_no_partial_file(
    arc, tmp_path, catalog_snapshot
) -> None:
    src = big_model(tmp_path / "big", megabytes=24)
    arc("push", src, "acme/big:v1")
    before = catalog_snapshot()
    out = tmp_path / "out"
    out.mkdir()
    with FullDisk(out, capacity=5 * 1024 * 1024) as disk:
        result = arc.fail("pull", "acme/big:v1", out)
    assert disk.refused
    assert result.exit_code == 13
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: disk full"), result.stderr
    assert "destination folder" in lines[0] and str(out) in lines[0]
    assert not [p for p in out.rglob("*") if p.name.endswith(".safetensors")]  # nothing under a real name
    assert not [p for p in out.rglob("*") if "modelarc-partial" in p.name]
    assert catalog_snapshot() == before
    arc("pull", "acme/big:v1", out)  # once there is room, the same pull completes without --force
    assert (out / "a.safetensors").read_bytes() == (src / "a.safetensors").read_bytes()
