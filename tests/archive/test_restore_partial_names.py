"""A snapshot file named like a restore's temp file survives a resumed restore. The resume deletes the temp files an
interrupted run left, by name, and deleted such a snapshot file too, then reported every file restored (the next pull
wrote it back). Push refuses such names, but a snapshot from another archive or an older version may hold them."""

from __future__ import annotations

from pathlib import Path

from modelarc.archive.ingest import ingest
from modelarc.archive.manifest import SnapshotManifest, canonical_json
from modelarc.archive.restore import restore
from modelarc.storage import ObjectStore

# one of each: today's temp name and the one older versions derived from the file name
TEMP_LIKE = {
    "a.txt": ".modelarc-partial-0123456789abcdef0123456789abcdef",
    "sub/b.txt": "sub/.notes.0123456789ab.modelarc-partial",
}


def _manifest_with_temp_like_names(tmp_path: Path, store: ObjectStore) -> SnapshotManifest:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"a snapshot file\n")
    (src / "sub" / "b.txt").write_bytes(b"another one\n")
    (src / "c.txt").write_bytes(b"a plain name\n")
    doc = ingest(src, store).manifest.to_json()
    for f in doc["files"]:
        f["path"] = TEMP_LIKE.get(f["path"], f["path"])
    doc["files"].sort(key=lambda f: f["path"])
    return SnapshotManifest.from_bytes(canonical_json(doc))


def test_resumed_restore_keeps_snapshot_files_named_like_its_temp_files(tmp_path: Path) -> None:
    store = ObjectStore.open_local(tmp_path / "store")
    manifest = _manifest_with_temp_like_names(tmp_path, store)
    dest = tmp_path / "out"
    restore(store, manifest, dest, resume=True)
    (dest / "c.txt").unlink()  # an interrupted pull: one file not yet there, so the resume writes something
    leftover = dest / "sub" / ".modelarc-partial-ffffffffffffffffffffffffffffffff"
    leftover.write_bytes(b"half a file")  # a real temp file of ours, which the resume must still remove
    restore(store, manifest, dest, resume=True)
    for name in TEMP_LIKE.values():
        assert (dest / name).is_file(), name
    assert (dest / TEMP_LIKE["a.txt"]).read_bytes() == b"a snapshot file\n"
    assert (dest / TEMP_LIKE["sub/b.txt"]).read_bytes() == b"another one\n"
    assert (dest / "c.txt").read_bytes() == b"a plain name\n"
    assert not leftover.exists()
