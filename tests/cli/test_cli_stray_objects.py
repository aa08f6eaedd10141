"""Files under objects/ that are not an object's own key (a name not 64 hex, or a copy in another fan-out folder,
docs/FORMAT.md "Keys"), on SQLite and PostgreSQL: no command takes one for the object, fsck reports them, and a
misplaced copy leaves its object missing, as fsck, repair and mirror sync then treat it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

ArchiveCli = Any  # tests/cli/conftest.py


def _pushed(arc: ArchiveCli, tmp_path: Path) -> str:
    """Push one small file (stored as one object, whose id is its sha256); that id."""
    data = bytes(range(256)) * 40
    (tmp_path / "w.bin").write_bytes(data)
    arc("push", tmp_path / "w.bin", "acme/m:v1")
    return hashlib.sha256(data).hexdigest()


def _misplace(root: Path, oid: str) -> Path:
    """Move the object's file into another fan-out folder; where it went."""
    wrong = root / "objects" / "zz" / oid
    wrong.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(root / "objects" / oid[:2] / oid, wrong)
    return wrong


def test_fsck_counts_a_misplaced_copy_as_missing_and_reports_every_stray(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    store = arc.home / "store"
    oid = _pushed(arc, tmp_path)
    checked = arc.json("fsck")["objects_checked"]
    (store / "objects" / oid[:2] / "NOT-AN-OBJECT").write_bytes(b"x")
    _misplace(store, oid)

    result = arc("fsck", "--json", ok=False)
    assert result.exit_code == 5
    report = json.loads(result.stdout)
    assert list(report["missing"]) == [oid] and report["broken_snapshots"]
    assert report["stray"] == [f"objects/{oid[:2]}/NOT-AN-OBJECT", f"objects/zz/{oid}"]
    assert report["objects_checked"] == checked - 1  # the misplaced copy is not an object
    assert f"STRAY    objects/zz/{oid}" in arc("fsck", ok=False).stdout


def test_repair_fetches_an_object_whose_only_primary_copy_is_misplaced(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    store = arc.home / "store"
    oid = _pushed(arc, tmp_path)
    arc("mirror", "add", "usb", tmp_path / "mirror")
    arc("mirror", "sync")
    _misplace(store, oid)
    assert arc.json("repair")["repaired"] == {oid: "usb"}
    assert arc.json("fsck")["ok"]


def test_mirror_sync_copies_an_object_the_mirror_holds_only_in_another_folder(
    arc: ArchiveCli, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    oid = _pushed(arc, tmp_path)
    arc("mirror", "add", "usb", mirror)
    arc("mirror", "sync")
    _misplace(mirror, oid)
    assert arc.json("mirror", "sync")[0]["objects_copied"] == 1
    assert (mirror / "objects" / oid[:2] / oid).is_file()
