"""Files a push proves unchanged by their chunk ids (archive/proven_files.py): every byte read, a difference anywhere
found, and a changed file read as a new one, never taken as the earlier entry."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pushkit import files_read_as_new, small_model
from safetensors.numpy import save_file

from modelarc.archive import chunk_proof, push_index
from modelarc.archive.chunk_proof import chunk_spans
from modelarc.archive.ingest import Reused, ingest
from modelarc.archive.manifest import Part, SnapshotManifest
from modelarc.archive.proven_files import Candidate, prove_unchanged
from modelarc.archive.push import push_folder
from modelarc.archive.repository import Archive
from modelarc.storage import ObjectStore


@pytest.fixture(autouse=True)
def settled_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push_index, "SETTLE_SECONDS", 0.0)


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    return ObjectStore.open_local(tmp_path / "store")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return small_model(tmp_path / "model", seed=11, tensors=12, shape=(64, 64))


read_as_new = files_read_as_new


def flip_in_place(path: Path, at: int) -> bytes:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    with open(path, "r+b") as fh:  # same inode, same size
        fh.write(data)
    return bytes(data)


def forge_stat_back(archive: Archive, path: Path) -> None:
    """Make the push index's entry for ``path`` match its stat now, as if the bytes had changed under an unchanged
    stat (a disk corrupting a file in place): exactly what a push trusts and ``--rehash`` is for."""
    index_path = archive.settings.home / push_index.INDEX_FILE
    doc = json.loads(index_path.read_text())
    st = path.stat()
    entry = doc["files"][os.path.abspath(path)]
    entry.update(size=st.st_size, mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, ino=st.st_ino, dev=st.st_dev)
    index_path.write_text(json.dumps(doc))


def test_rehash_finds_bytes_changed_under_an_unchanged_stat(
    archive: Archive, model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first = archive.push(model, "acme/m:v1")
    weights = model / "model.safetensors"
    changed = flip_in_place(weights, weights.stat().st_size - 3)  # the last tensor's last chunk
    forge_stat_back(archive, weights)
    trusted = archive.push(model, "acme/m:v2")
    assert trusted.snapshot == first.snapshot  # the stat is trusted: the documented limit --rehash lifts
    seen = read_as_new(monkeypatch)
    forced = archive.push(model, "acme/m:v3", rehash=True)
    assert seen == ["model.safetensors"] and forced.proven_files == 1 and forced.unchanged_files == 0
    assert forced.snapshot != first.snapshot and forced.new_snapshot
    archive.pull("acme/m:v3", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == changed
    archive.verify("acme/m:v3")


def test_a_touched_file_is_proven_and_then_trusted_by_its_new_stat(
    archive: Archive, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = archive.push(model, "acme/m:v1")
    weights = model / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns - 10**9))
    seen = read_as_new(monkeypatch)
    again = archive.push(model, "acme/m:v1")
    assert seen == [] and (again.unchanged_files, again.proven_files) == (1, 1)
    assert again.snapshot == first.snapshot and again.stored_bytes_added == 0
    hashed: list[int] = []
    real = chunk_proof._Reader.digest
    monkeypatch.setattr(
        chunk_proof._Reader, "digest", lambda self, fd, span: hashed.append(span.length) or real(self, fd, span)
    )
    third = archive.push(model, "acme/m:v1")  # the index now holds the touched stat
    assert (third.unchanged_files, third.proven_files, hashed, seen) == (2, 0, [], [])


def test_a_changed_file_is_read_as_new_with_progress_counting_each_read(
    archive: Archive, model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The proof hashes most of a file changed at its end before it finds the difference; the bar's total grows
    by what it hashed, so the reports never run past it."""
    archive.push(model, "acme/m:v1")
    weights = model / "model.safetensors"
    changed = flip_in_place(weights, weights.stat().st_size - 3)
    totals: list[int] = []
    reported: list[int] = []
    result = push_folder(
        archive, model, "acme/m:v2", progress=reported.append, on_total=totals.append, rehash=True
    )
    size = sum(p.stat().st_size for p in model.iterdir())
    assert totals[0] == size and totals[-1] > size and sum(reported) == totals[-1]
    assert result.proven_files == 1 and result.new_snapshot
    archive.pull("acme/m:v2", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == changed


def entry_of(store: ObjectStore, folder: Path, rel: str) -> Reused:
    result = ingest(folder, store)
    entry = next(f for f in result.manifest.files if f.path == rel)
    return Reused(entry, ())


def test_the_proof_stops_at_the_first_chunk_that_differs(model: Path, tmp_path: Path, store: ObjectStore) -> None:
    reused = entry_of(store, model, "model.safetensors")
    chunks = sum(len(p.chunks) for p in reused.entry.parts)
    weights = model / "model.safetensors"
    flip_in_place(weights, reused.entry.parts[1].offset + 1)  # the first tensor
    hashed: list[int] = []
    proven, wasted = prove_unchanged(
        [Candidate("model.safetensors", weights, reused)], progress=hashed.append, workers=1
    )
    assert proven == {} and wasted == sum(hashed) > 0
    assert len(hashed) <= 1 + chunk_proof.IN_FLIGHT_PER_WORKER < chunks


def test_an_unchanged_file_is_proven_and_a_shorter_one_is_not(
    model: Path, tmp_path: Path, store: ObjectStore
) -> None:
    weights = model / "model.safetensors"
    reused = entry_of(store, model, "model.safetensors")
    proven, wasted = prove_unchanged([Candidate("model.safetensors", weights, reused)], workers=2)
    assert list(proven) == ["model.safetensors"] and wasted == 0
    assert proven["model.safetensors"].read.sha256 == reused.entry.sha256
    data = weights.read_bytes()
    weights.write_bytes(data[:-1])
    assert prove_unchanged([Candidate("model.safetensors", weights, reused)]) == ({}, 0)
    weights.write_bytes(data + b"\0")
    assert prove_unchanged([Candidate("model.safetensors", weights, reused)]) == ({}, 0)
    missing = Candidate("model.safetensors", tmp_path / "gone.safetensors", reused)
    assert prove_unchanged([missing]) == ({}, 0)


def test_an_entry_whose_chunks_do_not_tile_the_file_proves_nothing(model: Path, store: ObjectStore) -> None:
    entry = entry_of(store, model, "model.safetensors").entry
    assert chunk_spans(entry) is not None
    parts = list(entry.parts)
    gap = replace(parts[1], offset=parts[1].offset + 1)
    assert chunk_spans(replace(entry, parts=(parts[0], gap, *parts[2:]))) is None
    assert chunk_spans(replace(entry, parts=tuple(parts[:-1]))) is None  # short of the file's size
    assert chunk_spans(replace(entry, size=entry.size + 1)) is None
    long_part = Part(parts[1].kind, parts[1].offset, parts[1].length - 1, parts[1].chunks, parts[1].name)
    assert chunk_spans(replace(entry, parts=(parts[0], long_part, *parts[2:]))) is None


@pytest.mark.parametrize("rehash", [False, True])
def test_the_index_may_name_only_a_snapshot_the_catalog_records(
    archive: Archive, model: Path, monkeypatch: pytest.MonkeyPatch, rehash: bool
) -> None:
    """A manifest object in the store that no snapshot record stands for (a refused push's upload) may state a
    sha256 its chunks do not have: an index naming it, trusted or proven, must not carry that sha256 into a
    snapshot."""
    first = archive.push(model, "acme/m:v1")
    real = archive.manifest_by_id(first.snapshot)
    forged = SnapshotManifest(
        tuple(replace(f, sha256="f" * 64) if f.path == "model.safetensors" else f for f in real.files)
    )
    archive.store.put(forged.canonical_bytes())
    index_path = archive.settings.home / push_index.INDEX_FILE
    doc = json.loads(index_path.read_text())
    entry = doc["files"][os.path.abspath(model / "model.safetensors")]
    entry.update(snapshot=forged.snapshot_id.hex, sha256="f" * 64)
    index_path.write_text(json.dumps(doc))
    seen = read_as_new(monkeypatch)
    again = archive.push(model, "acme/m:v2", rehash=rehash)
    assert seen == ["model.safetensors"] and again.snapshot == first.snapshot
    assert {f.sha256 for f in archive.manifest_by_id(again.snapshot).files} == {f.sha256 for f in real.files}


def test_a_tensor_of_several_chunks_is_proven_and_a_change_in_its_middle_chunk_is_found(
    tmp_path: Path, store: ObjectStore
) -> None:
    """Real tensors span several 8 MiB chunks, each at its own offset within its part."""
    folder = tmp_path / "big"
    folder.mkdir()
    rng = np.random.default_rng(5)
    save_file({"w": rng.standard_normal(5 * 1024 * 1024).astype(np.float32)}, str(folder / "model.safetensors"))
    reused = entry_of(store, folder, "model.safetensors")
    (tensor,) = reused.entry.tensors()
    assert len(tensor.chunks) == 3
    weights = folder / "model.safetensors"
    proven, _ = prove_unchanged([Candidate("model.safetensors", weights, reused)], workers=2)
    assert list(proven) == ["model.safetensors"]
    flip_in_place(weights, tensor.offset + tensor.chunks[0].length + 5)  # in the tensor's second chunk
    proven, wasted = prove_unchanged([Candidate("model.safetensors", weights, reused)], workers=2)
    assert proven == {} and wasted > 0


def test_a_file_written_while_it_is_proven_is_not_taken(
    model: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its bytes may be of both versions: a read as new refuses such a file, so a proof must not take it."""
    weights = model / "model.safetensors"
    reused = entry_of(store, model, "model.safetensors")
    real = chunk_proof._Reader.digest
    touched: list[bool] = []

    def touching(self, fd, span):  # type: ignore[no-untyped-def]
        if not touched:
            touched.append(True)
            os.utime(weights, ns=(0, weights.stat().st_mtime_ns + 10**9))  # the same bytes, a new stat
        return real(self, fd, span)

    monkeypatch.setattr(chunk_proof._Reader, "digest", touching)
    assert prove_unchanged([Candidate("model.safetensors", weights, reused)], workers=1)[0] == {}
