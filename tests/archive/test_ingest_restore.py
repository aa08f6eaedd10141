import filecmp
import json
from pathlib import Path

import pytest
from modelfactory import big_model, finetune, tiny_tensors, write_model

from modelarc.archive.ingest import ingest
from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.restore import restore
from modelarc.errors import DestinationError, SourceError, UsageError
from modelarc.storage import ObjectStore


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore.open_local(tmp_path / "store")


def _same_tree(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert filecmp.cmp(a / rel, b / rel, shallow=False), rel


def test_restore_is_byte_identical(tmp_path: Path, store: ObjectStore) -> None:
    src = write_model(tmp_path / "m", extra_files={"sub/dir/notes.txt": b"hello\n", "empty.bin": b""})
    result = ingest(src, store)
    restore(store, result.manifest, tmp_path / "out")
    _same_tree(src, tmp_path / "out")


def test_multi_chunk_tensors_restore_byte_identical(tmp_path: Path, store: ObjectStore) -> None:
    src = big_model(tmp_path / "big", megabytes=20)
    result = ingest(src, store)
    tensor_chunks = [len(p.chunks) for _f, p in result.manifest.tensors()]
    assert max(tensor_chunks) >= 2
    restore(store, result.manifest, tmp_path / "out")
    _same_tree(src, tmp_path / "out")
    assert result.stored_bytes_added < 0.9 * result.manifest.logical_bytes  # the float codec compressed


def test_manifest_round_trips_through_canonical_bytes(tmp_path: Path, store: ObjectStore) -> None:
    manifest = ingest(write_model(tmp_path / "m"), store).manifest
    again = SnapshotManifest.from_bytes(manifest.canonical_bytes(), expected_id=manifest.snapshot_id)
    assert again == manifest
    assert again.snapshot_id == manifest.snapshot_id


def test_reingest_adds_nothing_and_same_snapshot_id(tmp_path: Path, store: ObjectStore) -> None:
    src = write_model(tmp_path / "m")
    first = ingest(src, store)
    second = ingest(src, store)
    assert first.stored_bytes_added > 0
    assert second.stored_bytes_added == 0
    assert second.manifest.snapshot_id == first.manifest.snapshot_id


def test_finetune_of_two_tensors_adds_about_those_tensors(tmp_path: Path, store: ObjectStore) -> None:
    base = tiny_tensors(layers=4, hidden=128, vocab=512)
    ingest(write_model(tmp_path / "base", base), store)
    changed = ["model.layers.1.mlp.weight", "model.layers.3.attn.weight"]
    result = ingest(write_model(tmp_path / "ft", finetune(base, changed)), store)
    changed_bytes = sum(base[n].nbytes for n in changed)
    header_and_small = 4096
    assert result.stored_bytes_added <= changed_bytes + header_and_small
    assert result.stored_bytes_added >= 0.5 * changed_bytes  # the changed tensors really were stored


def test_missing_source_is_a_clear_error(tmp_path: Path, store: ObjectStore) -> None:
    with pytest.raises(SourceError, match="no such file or folder"):
        ingest(tmp_path / "nope", store)


def test_empty_folder_is_refused(tmp_path: Path, store: ObjectStore) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no files"):
        ingest(tmp_path / "empty", store)


def test_restore_refuses_to_overwrite_without_force(tmp_path: Path, store: ObjectStore) -> None:
    src = write_model(tmp_path / "m")
    manifest = ingest(src, store).manifest
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("mine")
    with pytest.raises(DestinationError, match="already exists"):
        restore(store, manifest, out)
    assert (out / "config.json").read_text() == "mine"
    assert not (out / "model.safetensors").exists()  # refused before writing anything
    restore(store, manifest, out, force=True)
    _same_tree(src, out)


def test_manifest_with_escaping_path_is_refused(tmp_path: Path, store: ObjectStore) -> None:
    manifest = ingest(write_model(tmp_path / "m"), store).manifest
    doc = manifest.to_json()
    doc["files"][0]["path"] = "../escape.txt"
    from modelarc.archive.manifest import canonical_json

    with pytest.raises(UsageError, match="unsafe path"):
        SnapshotManifest.from_bytes(canonical_json(doc))


def test_restore_refuses_symlinked_folder_pointing_outside(tmp_path: Path, store: ObjectStore) -> None:
    src = write_model(tmp_path / "m", extra_files={"sub/x.txt": b"x"})
    manifest = ingest(src, store).manifest
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (out / "sub").symlink_to(outside)
    with pytest.raises(DestinationError, match="outside"):
        restore(store, manifest, out)
    assert not any(outside.iterdir())


@pytest.mark.parametrize("second_path", ["config.json", "config.json/inner"])
def test_manifest_with_clashing_paths_is_refused(tmp_path: Path, store: ObjectStore, second_path: str) -> None:
    from modelarc.archive.manifest import canonical_json
    from modelarc.errors import IntegrityError

    doc = ingest(write_model(tmp_path / "m"), store).manifest.to_json()
    clone = dict(doc["files"][0])
    clone["path"] = second_path
    doc["files"][0]["path"] = "config.json"
    doc["files"].append(clone)
    with pytest.raises(IntegrityError, match="twice|both a file and a folder"):
        SnapshotManifest.from_bytes(canonical_json(doc))


def test_restore_creates_names_up_to_255_bytes(tmp_path: Path, store: ObjectStore) -> None:
    # the temp file beside each target used to be named after it, 31 bytes longer: past NAME_MAX from 225 bytes
    names = {"n" * 255: b"a", "é" * 127 + "x": b"b", "d" * 255 + "/" + "f" * 225: b"c"}
    src = write_model(tmp_path / "m", extra_files=names)
    restore(store, ingest(src, store).manifest, tmp_path / "out")
    _same_tree(src, tmp_path / "out")


@pytest.mark.parametrize(
    "path, problem",
    [
        ("n" * 256, "name of 256 bytes"),
        ("ok/" + "é" * 128, "name of 256 bytes"),
        ("caf\udce9.bin", "not valid UTF-8"),  # how Python presents the byte 0xe9 of a Linux file name
        ("lone\ud800.bin", "not valid UTF-8"),  # a JSON "\ud800" escape in a hostile manifest
    ],
)
def test_manifest_refuses_a_path_no_restore_could_create(path: str, problem: str) -> None:
    doc = {
        "format": "modelarc.manifest",
        "version": 1,
        "files": [
            {
                "path": path,
                "size": 0,
                "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "kind": "blob",
                "parts": [],
            }
        ],
    }
    data = json.dumps(doc).encode()  # ensure_ascii: lone surrogates travel as \\u escapes
    with pytest.raises(UsageError, match=problem):
        SnapshotManifest.from_bytes(data)


def test_resume_keeps_matching_files_and_removes_our_temp_files(tmp_path: Path, store: ObjectStore) -> None:
    src = write_model(tmp_path / "m")
    manifest = ingest(src, store).manifest
    out = tmp_path / "out"
    restore(store, manifest, out)
    (out / "config.json").unlink()
    stale = out / ".modelarc-partial-ffffffffffffffffffffffffffffffff"
    stale.write_bytes(b"half")
    before = (out / "model.safetensors").stat().st_mtime_ns
    written = restore(store, manifest, out, resume=True)
    assert written == [out / "config.json"]
    assert (out / "model.safetensors").stat().st_mtime_ns == before
    assert not stale.exists()
    with pytest.raises(DestinationError, match="already exists"):  # without resume, as before
        restore(store, manifest, out)


@pytest.mark.parametrize(
    "dest, blocker",
    [
        ("a-file", "a-file"),  # the destination is a file
        ("a-file/under", "a-file"),  # it lies under one
        ("out", "out/sub"),  # a folder the snapshot needs is a file there
        ("dangling", "dangling"),  # a symlink to nothing
    ],
)
def test_a_destination_that_cannot_be_a_folder_is_refused_before_writing(
    tmp_path: Path, store: ObjectStore, dest: str, blocker: str
) -> None:
    manifest = ingest(write_model(tmp_path / "m", extra_files={"sub/x.txt": b"x"}), store).manifest
    (tmp_path / "out").mkdir()
    if blocker == "dangling":
        (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    else:
        (tmp_path / blocker).write_text("mine")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "store" not in p.parts)
    with pytest.raises(DestinationError, match=f"{tmp_path / blocker} exists and is not a folder"):
        restore(store, manifest, tmp_path / dest)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if "store" not in p.parts) == before
    if blocker != "dangling":
        assert (tmp_path / blocker).read_text() == "mine"


def test_a_folder_that_cannot_be_written_is_named(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder the system refuses (not writable to us, a read-only or pseudo file system): one DestinationError
    naming it, where a bare PermissionError used to come out of a pool thread."""
    import modelarc.archive.restore as restore_module

    manifest = ingest(write_model(tmp_path / "m"), store).manifest
    real_open = restore_module.os.open

    def refuse(path, flags, *args):  # type: ignore[no-untyped-def]
        if "out" in Path(path).parts:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(restore_module.os, "open", refuse)
    with pytest.raises(DestinationError, match=f"cannot write into {tmp_path / 'out'}: Permission denied"):
        restore(store, manifest, tmp_path / "out")
    assert not any((tmp_path / "out").iterdir())
