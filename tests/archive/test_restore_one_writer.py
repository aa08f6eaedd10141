"""Two restores into one folder at once: the second is refused before it writes (or deletes) anything. Each restore
with ``resume`` deletes the temp files an interrupted run left in the folder, and did so to the other's in-flight
ones, which then failed with a bare "no such file" on rename."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from modelarc.archive.ingest import ingest
from modelarc.archive.restore import PARTIAL_PREFIX, restore
from modelarc.errors import DestinationError
from modelarc.storage import ObjectId, ObjectStore


def _settled_partials(dest: Path) -> list[str]:
    """The partial files of a pull stalled on one chunk, once its other threads are done with the rest: the same
    listing twice, 0.3 s apart (a file finished meanwhile is renamed away, one started appears)."""
    seen: list[str] | None = None
    for _ in range(100):
        now = sorted(p.name for p in dest.iterdir() if p.name.startswith(PARTIAL_PREFIX))
        if now == seen:
            return now
        seen = now
        time.sleep(0.3)
    raise AssertionError(f"the stalled pull's partial files never settled: {seen}")


def test_a_second_restore_into_a_folder_being_written_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"f{i}.txt").write_bytes(f"file {i}\n".encode() * 1000)
    store = ObjectStore.open_local(tmp_path / "store")
    manifest = ingest(src, store).manifest
    dest = tmp_path / "out"
    held, release = threading.Event(), threading.Event()
    first = manifest.files[-1].parts[0].chunks[0].id

    def slow(oid: ObjectId, out: bytearray | None) -> bytes | bytearray:  # the first pull stalls mid-way
        if oid == first:
            held.set()
            assert release.wait(timeout=60)
        return store.get(oid)

    failed: list[BaseException] = []

    def run() -> None:
        try:
            restore(store, manifest, dest, jobs=1, source=slow, resume=True)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failed.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    try:
        assert held.wait(timeout=60)
        partial = _settled_partials(dest)  # the first pull's other files finish (renamed) or wait on the stall
        with pytest.raises(DestinationError, match="another pull is writing"):
            restore(store, manifest, dest, jobs=1, resume=True, force=True)
        assert partial == sorted(p.name for p in dest.iterdir() if p.name.startswith(PARTIAL_PREFIX))
    finally:
        release.set()
        worker.join(timeout=60)
    assert not failed, failed
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == {p.name: p.read_bytes() for p in src.iterdir()}
    restore(store, manifest, dest, resume=True)  # the folder is free again once the first has ended
