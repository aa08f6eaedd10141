"""A folder the store creates is made durable in its parent before the catalog names what is in it.

A first push into a fresh store makes ``store/objects``, ``store/objects/XX`` and ``store/records``; only the leaf
fan-out folders were fsynced, never ``store/objects/`` nor ``store/``, so a power loss after the catalog commit
could lose a whole folder of objects the catalog lists. Observed as the kernel sees it: every ``os.fsync`` of the
real push is recorded by the path of its descriptor (/proc/self/fd/N), on a real store and a real catalog.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from modelfactory import tiny_tensors, write_model

from modelarc.archive.repository import Archive


def _fsynced_folders(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every folder fsynced from now on, in order (files are left out), by what its descriptor resolves to."""
    seen: list[Path] = []
    lock = threading.Lock()
    real: Callable[[int], None] = os.fsync

    def recording(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            with lock:
                seen.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return seen


def test_a_first_push_into_a_fresh_store_syncs_every_folder_it_creates_in_its_parent(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELARC_DATABASE_URL", database_url)
    at_init = _fsynced_folders(monkeypatch)
    archive, _ = Archive.init(tmp_path / "home")
    store = Path(archive.store.backend.root).resolve()  # (a local store: init's default)
    # init's new folders: the home in its parent, the store in the home, tmp/ in the store
    assert {tmp_path.resolve(), store.parent, store} <= set(at_init), at_init
    monkeypatch.undo()
    monkeypatch.setenv("MODELARC_DATABASE_URL", database_url)
    assert not (store / "objects").exists()
    src = write_model(tmp_path / "m", tiny_tensors(seed=21))
    try:
        synced = _fsynced_folders(monkeypatch)
        archive.push(src, "acme/m:v1")
        fanout = {p.parent for p in (store / "objects").rglob("*") if p.is_file()}
        assert fanout and fanout <= set(synced)  # the folders renamed into (as before)
        # the new folders' own entries: objects/XX in objects/, objects/ and records/ in the store's root
        assert store / "objects" in synced, synced
        assert store in synced, synced
        assert (store / "records").is_dir()
        # once per new folder, not per object: the push wrote many objects into objects/XX folders
        objects = sum(1 for p in (store / "objects").rglob("*") if p.is_file())
        assert synced.count(store / "objects") < objects

        synced.clear()
        archive.push(src, "acme/m:v2")  # no new folder: neither parent is synced again for it
        assert store / "objects" not in synced and store not in synced, synced
    finally:
        archive.close()
