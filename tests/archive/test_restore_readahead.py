"""restore() reads ahead over the whole snapshot, across file boundaries, within a fixed window of chunks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from modelarc.archive.ingest import ingest
from modelarc.archive.restore import READ_AHEAD, restore
from modelarc.storage import ObjectId, ObjectStore


@pytest.fixture
def small_files(tmp_path: Path) -> tuple[ObjectStore, Path]:
    """A snapshot of 3 * READ_AHEAD one-chunk files."""
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3 * READ_AHEAD):
        (src / f"f{i:02d}.txt").write_bytes(f"file {i}\n".encode() * (i + 1))
    return ObjectStore.open_local(tmp_path / "store"), src


def test_restore_fetches_the_next_files_chunks_while_one_file_waits(
    small_files: tuple[ObjectStore, Path], tmp_path: Path
) -> None:
    store, src = small_files
    manifest = ingest(src, store).manifest
    first = manifest.files[0].parts[0].chunks[0].id
    others_started = threading.Event()

    def source(oid: ObjectId, out: bytearray | None) -> bytes | bytearray:  # out: decoded into fresh bytes here
        if oid == first:  # hold the first file back until a chunk of another file is asked for
            assert others_started.wait(timeout=60), (
                "no chunk of a later file was fetched while the first waited"
            )
        else:
            others_started.set()
        return store.get(oid)

    restore(store, manifest, tmp_path / "out", jobs=2, source=source)
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == {
        p.name: p.read_bytes() for p in src.iterdir()
    }


@pytest.mark.parametrize("jobs", [1, 2, READ_AHEAD + 2])
def test_restore_holds_at_most_its_window_of_chunks_across_files(
    small_files: tuple[ObjectStore, Path], tmp_path: Path, jobs: int
) -> None:
    store, src = small_files
    manifest = ingest(src, store).manifest
    lock = threading.Lock()
    started = written = peak = 0

    def source(oid: ObjectId, out: bytearray | None) -> bytes | bytearray:  # out: decoded into fresh bytes here
        nonlocal started, peak
        with lock:
            started += 1
            peak = max(peak, started - written)
        return store.get(oid)

    def progress(_n: int) -> None:
        nonlocal written
        with lock:
            written += 1

    restore(store, manifest, tmp_path / "out", jobs=jobs, source=source, progress=progress)
    assert started == written == 3 * READ_AHEAD
    # the window, and the chunk being written, whatever the number of files
    assert peak <= max(READ_AHEAD, jobs) + 1
