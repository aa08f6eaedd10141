"""File names: every name push accepts can be pulled back, and names that cannot be archived are refused before
any object is written."""

import filecmp
import os
from pathlib import Path

import pytest
from modelfactory import write_model


def _objects(home: Path) -> list[Path]:
    return sorted(p for p in (home / "store" / "objects").rglob("*") if p.is_file())


@pytest.mark.parametrize(
    "name",
    [
        "n" * 225,  # the shortest name the old temp name (.{name}.{12 hex}.modelarc-partial) pushed past 255
        "n" * 255,  # NAME_MAX
        "é" * 127 + "x",  # 255 bytes of UTF-8 in 128 characters
        "d" * 255 + "/" + "f" * 255,  # a folder and a file, both at the limit
    ],
)
def test_every_name_push_accepts_can_be_pulled(arc, tmp_path: Path, name: str) -> None:
    src = write_model(tmp_path / "m", extra_files={name: b"long name\n"})
    arc("push", src, "acme/long:v1")
    out = tmp_path / "out"
    arc("pull", "acme/long:v1", out)
    assert filecmp.cmp(src / name, out / name, shallow=False)
    assert not [p for p in out.rglob("*") if "modelarc-partial" in p.name]


def test_push_refuses_a_name_that_is_not_utf8_before_writing_anything(
    arc, tmp_path, catalog_snapshot
) -> None:
    src = write_model(tmp_path / "m")
    (src / os.fsdecode(b"caf\xe9.bin")).write_bytes(b"not utf-8 in the name")
    before, objects = catalog_snapshot(), _objects(arc.home)
    result = arc.fail("push", src, "acme/latin1:v1")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "caf\\xe9.bin" in lines[0] and "not valid UTF-8" in lines[0]
    assert catalog_snapshot() == before
    assert _objects(arc.home) == objects  # nothing was written to the store, not even unreferenced objects
