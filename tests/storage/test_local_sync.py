"""LocalBackend.sync: every folder a put renamed into is fsynced (all at once), and a failed fsync is raised."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from modelarc.storage import local as local_module
from modelarc.storage.local import LocalBackend


def _put_spread(backend: LocalBackend, n: int) -> set[Path]:
    for i in range(n):
        backend.put(f"objects/{i:02x}/{i:064x}", b"x" * (i + 1))
    return {backend.root / "objects" / f"{i:02x}" for i in range(n)}


def test_sync_fsyncs_every_folder_written_to_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = LocalBackend(tmp_path)
    folders = _put_spread(backend, 40)
    synced: list[Path] = []
    lock = threading.Lock()
    real = local_module._fsync_dir

    def recording(path: Path) -> None:
        with lock:
            synced.append(path)
        real(path)

    monkeypatch.setattr(local_module, "_fsync_dir", recording)
    backend.sync()
    # and the parents of the folders the puts created: objects/ (its new fan-out folders) and the root (objects/)
    made = {backend.root / "objects", backend.root}
    assert sorted(synced) == sorted(folders | made)
    backend.sync()  # nothing written since: nothing to sync
    assert len(synced) == len(folders | made)


def test_a_failed_folder_fsync_is_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = LocalBackend(tmp_path)
    folders = _put_spread(backend, 8)
    bad = sorted(folders)[3]
    real = local_module._fsync_dir

    def failing(path: Path) -> None:
        if path == bad:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(path)

    monkeypatch.setattr(local_module, "_fsync_dir", failing)
    with pytest.raises(OSError, match="Input/output error"):
        backend.sync()
