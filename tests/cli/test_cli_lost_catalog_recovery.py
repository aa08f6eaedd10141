"""The recovery after losing the catalog and a chunk (docs/FORMAT.md "Catalog records"), on SQLite and PostgreSQL:
a snapshot `rebuild-catalog` refuses for a chunk the primary lost keeps its other objects through gc (one may be
the last copy), `repair` fetches the lost chunk from a mirror, and a second rebuild brings the snapshot back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from catalogkit import drop_catalog
from modelfactory import tiny_tensors, write_model

from modelarc.archive.manifest import SnapshotManifest
from modelarc.registry.refs import SnapshotId
from modelarc.storage import ObjectId, ObjectStore

ArchiveCli = Any  # tests/cli/conftest.py


def _chunks(store: Path, digest: str) -> list[str]:
    """The tensor chunks of snapshot ``digest``, read from its manifest in ``store``."""
    data = ObjectStore.open_local(store).get(ObjectId(SnapshotId(digest).hex))
    manifest = SnapshotManifest.from_bytes(bytes(data), expected_id=SnapshotId(digest))
    return [str(c.id) for f in manifest.files for p in f.parts if p.kind == "tensor" for c in p.chunks]


def _path(root: Path, oid: str) -> Path:
    return root / "objects" / oid[:2] / oid


def test_gc_keeps_and_repair_fetches_the_objects_of_a_snapshot_a_rebuild_refused(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    store, mirror = arc.home / "store", tmp_path / "mirror"
    arc("push", write_model(tmp_path / "m", tiny_tensors()), "acme/m:v1")
    (tmp_path / "other.bin").write_bytes(b"x")
    arc("push", tmp_path / "other.bin", "acme/other:v1")  # shares no object: the catalog rebuilt is not empty
    digest = arc.json("show", "acme/m:v1")["snapshot"]
    arc("mirror", "add", "usb", mirror)
    arc("mirror", "sync")
    lost, only_here, *_ = _chunks(store, digest)
    _path(store, lost).unlink()  # the primary loses one chunk ...
    _path(mirror, only_here).unlink()  # ... the mirror lacks another: every byte still has a copy
    drop_catalog(database_url)  # ... and the catalog is lost

    rebuilt = arc("rebuild-catalog", ok=False)
    assert (
        rebuilt.exit_code == 5 and f"object {lost}" in rebuilt.stdout and "modelarc repair" in rebuilt.stdout
    )
    assert arc.json("gc", "--dry-run")["objects_removed"] == 0
    arc("gc")
    assert _path(store, only_here).is_file()  # the last copy of it is kept

    arc("mirror", "add", "usb", mirror)
    repaired = arc.json("repair")
    assert repaired["ok"] and repaired["repaired"] == {lost: "usb"}
    assert _path(store, lost).is_file()

    drop_catalog(database_url)
    again = arc.json("rebuild-catalog")
    assert again["ok"] and again["replayed"]["snapshot"] == 2
    assert arc.json("verify", "--all")["ok"]


def test_repair_reports_a_refused_snapshot_s_object_no_mirror_has(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    store, mirror = arc.home / "store", tmp_path / "mirror"
    arc("push", write_model(tmp_path / "m", tiny_tensors()), "acme/m:v1")
    digest = arc.json("show", "acme/m:v1")["snapshot"]
    arc("mirror", "add", "usb", mirror)
    arc("mirror", "sync")
    lost = _chunks(store, digest)[0]
    _path(store, lost).unlink()
    _path(mirror, lost).unlink()
    drop_catalog(database_url)
    arc("rebuild-catalog", ok=False)
    arc("mirror", "add", "usb", mirror)
    result = arc("repair", "--json", ok=False)
    assert result.exit_code == 5
    assert result.stdout and f"acme/m@{digest} (records only)" in result.stdout


def test_gc_refuses_while_a_refused_snapshot_s_manifest_is_lost_and_repair_fetches_it_then_its_chunks(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    store, mirror = arc.home / "store", tmp_path / "mirror"
    arc("push", write_model(tmp_path / "m", tiny_tensors()), "acme/m:v1")
    (tmp_path / "other.bin").write_bytes(b"x")
    arc("push", tmp_path / "other.bin", "acme/other:v1")
    digest = arc.json("show", "acme/m:v1")["snapshot"]
    arc("mirror", "add", "usb", mirror)
    arc("mirror", "sync")
    chunk = _chunks(store, digest)[0]
    _path(store, SnapshotId(digest).hex).unlink()  # the manifest: which chunks the snapshot needs is unknown
    _path(store, chunk).unlink()
    drop_catalog(database_url)
    arc("rebuild-catalog", ok=False)

    refused = arc.fail("gc").stderr
    assert f"acme/m@{digest}" in refused and "modelarc repair" in refused
    assert _path(store, _chunks(mirror, digest)[1]).is_file()

    arc("mirror", "add", "usb", mirror)
    repaired = arc.json("repair")  # the manifest first, then the chunk it names
    assert repaired["ok"] and set(repaired["repaired"]) == {SnapshotId(digest).hex, chunk}
    assert arc.json("gc")["objects_removed"] == 0
    drop_catalog(database_url)
    assert arc.json("rebuild-catalog")["ok"]
    assert arc.json("verify", "--all")["ok"]


def test_gc_keeps_the_header_chunks_of_a_withdrawn_snapshot_a_rebuild_refused(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    """A withdrawn snapshot keeps its safetensors header (and pad) chunks, and a rebuild checks they are there: gc
    must keep them for a withdrawn snapshot the rebuild refused too, or the next rebuild refuses it for good."""
    store = arc.home / "store"
    w = write_model(tmp_path / "w", tiny_tensors(seed=1, layers=3), extra_files={"notes.md": b"card " * 50})
    arc("push", w, "acme/w:v1")  # (another header than acme/live's: none of its chunks is shared)
    arc("push", write_model(tmp_path / "l", tiny_tensors(seed=2)), "acme/live:v1")
    digest = arc.json("show", "acme/w:v1")["snapshot"]
    arc("rm", "acme/w:v1", "--reason", "takedown")
    data = ObjectStore.open_local(store).get(ObjectId(SnapshotId(digest).hex))
    manifest = SnapshotManifest.from_bytes(bytes(data), expected_id=SnapshotId(digest))
    headers = [str(c.id) for f in manifest.files if f.kind == "safetensors" for p in f.parts if p.kind != "tensor"
               for c in p.chunks]  # fmt: skip
    notes = next(str(c.id) for f in manifest.files if f.path == "notes.md" for p in f.parts for c in p.chunks)
    kept = _path(store, notes).read_bytes()
    _path(store, notes).unlink()  # a kept object the primary lost: the rebuild refuses the snapshot
    drop_catalog(database_url)
    arc("rebuild-catalog", ok=False)
    arc("gc")
    assert headers and all(_path(store, oid).is_file() for oid in headers)
    _path(store, notes).parent.mkdir(parents=True, exist_ok=True)
    _path(store, notes).write_bytes(kept)  # back (from a mirror, say)
    drop_catalog(database_url)
    arc("rebuild-catalog")
    assert arc.json("verify", "acme/w:v1")["withdrawn"] is True
