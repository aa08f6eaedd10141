"""Folders in the load cache's entries/ that are no readable entry (a damaged entry.json, one of another version)
count against MODELARC_CACHE_MAX_BYTES by their bytes on disk, and a capped load's eviction removes them before any
entry it could serve: they took room, uncounted, until `cache clear --all`. Eviction still never removes another
user's folder, and never follows a link (archive/runtime/cache.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from modelfactory import tiny_llama

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.cache import LoadCache
from modelarc.archive.runtime.models import load_model
from modelarc.config import load_settings
from modelarc.registry.refs import SnapshotId

NOBODY = 65534

# every test here uses only the cache, no catalog feature: SQLite is enough
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _on_disk(folder: Path) -> int:
    """Bytes under ``folder`` as `du` would count them by size, links not followed."""
    return sum(
        os.lstat(os.path.join(root, n)).st_size for root, _dirs, names in os.walk(folder) for n in names
    )


@pytest.fixture
def models(archive: Archive, tmp_path: Path) -> tuple[SnapshotId, SnapshotId]:
    archive.push(tiny_llama(tmp_path / "m0", seed=1), "acme/m0:v1")
    archive.push(tiny_llama(tmp_path / "m1", seed=2), "acme/m1:v1")
    return archive.resolve("acme/m0:v1")[1].digest, archive.resolve("acme/m1:v1")[1].digest


def _capped(archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: float) -> Archive:
    """An archive whose load cache (its own folder) holds ``entries`` times one entry's files."""
    _r, snap = archive.resolve("acme/m0:v1")
    size = sum(f.size for f in archive.manifest(snap).files if f.kind == "safetensors")
    monkeypatch.setenv("MODELARC_CACHE_MAX_BYTES", str(int(size * entries)))
    monkeypatch.setenv("MODELARC_CACHE_DIR", str(tmp_path / "cache"))
    return Archive(load_settings(archive.settings.home))


def _damage(entry: Path) -> None:
    (entry / "entry.json").chmod(0o644)
    (entry / "entry.json").write_text("{not json")


def test_a_capped_load_evicts_an_unreadable_entry_it_counts_by_its_bytes_on_disk(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: tuple[SnapshotId, SnapshotId]
) -> None:
    m0, m1 = models
    with _capped(archive, tmp_path, monkeypatch, 1.5) as capped:  # room for one entry
        cache = LoadCache.of(capped.settings)
        load_model(capped, "acme/m0:v1", device="cpu", cache=True)
        damaged = cache.folder / "entries" / m0.hex
        _damage(damaged)
        [unreadable] = cache.listing().unreadable
        assert unreadable.folder == damaged and unreadable.bytes == _on_disk(damaged)
        assert cache.listing().bytes == _on_disk(damaged) and cache.entries() == []

        load_model(capped, "acme/m1:v1", device="cpu", cache=True)
        assert not os.path.lexists(damaged)  # it could never be served: it made room for m1
        assert [e.snapshot for e in cache.entries()] == [m1] and cache.listing().unreadable == ()
        cap = capped.settings.cache_max_bytes
        assert cap is not None and _on_disk(cache.folder / "entries") <= cap


def test_an_unreadable_entry_under_the_cap_is_left(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: tuple[SnapshotId, SnapshotId]
) -> None:
    m0, m1 = models
    with _capped(archive, tmp_path, monkeypatch, 3) as capped:
        cache = LoadCache.of(capped.settings)
        load_model(capped, "acme/m0:v1", device="cpu", cache=True)
        _damage(cache.folder / "entries" / m0.hex)
        load_model(capped, "acme/m1:v1", device="cpu", cache=True)
        assert (cache.folder / "entries" / m0.hex / "entry.json").exists()  # room enough: nothing evicted
        assert [u.folder.name for u in cache.listing().unreadable] == [m0.hex]


@pytest.mark.skipif(os.geteuid() != 0, reason="making a folder another user's takes root")
def test_another_users_unreadable_entry_is_counted_but_never_evicted(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: tuple[SnapshotId, SnapshotId]
) -> None:
    """Root passes permission bits: only the owner check keeps eviction off another user's folder."""
    m0, m1 = models
    with _capped(archive, tmp_path, monkeypatch, 1.5) as capped:
        cache = LoadCache.of(capped.settings)
        load_model(capped, "acme/m0:v1", device="cpu", cache=True)
        theirs = cache.folder / "entries" / m0.hex
        _damage(theirs)
        for root, dirs, names in os.walk(theirs):  # as if user nobody had written it
            for name in [*dirs, *names]:
                os.lchown(os.path.join(root, name), NOBODY, NOBODY)
        os.lchown(theirs, NOBODY, NOBODY)
        before = _on_disk(theirs)

        load_model(capped, "acme/m1:v1", device="cpu", cache=True)
        assert _on_disk(theirs) == before and (theirs / "entry.json").read_text() == "{not json"
        listing = cache.listing()
        assert [(u.folder, u.bytes, u.mine) for u in listing.unreadable] == [(theirs, before, False)]
        assert listing.bytes == before + sum(e.bytes for e in listing.entries)


def test_a_link_in_place_of_an_entry_is_not_followed_nor_counted_by_its_target(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: tuple[SnapshotId, SnapshotId]
) -> None:
    m0, m1 = models
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "files").mkdir(parents=True)
    (elsewhere / "files" / "model.safetensors").write_bytes(b"\0" * (1 << 20))  # no entry.json: unreadable
    with _capped(archive, tmp_path, monkeypatch, 1.5) as capped:
        cache = LoadCache.of(capped.settings)
        (cache.folder / "entries").mkdir(parents=True)
        link = cache.folder / "entries" / m0.hex
        link.symlink_to(elsewhere, target_is_directory=True)
        [unreadable] = cache.listing().unreadable
        assert (unreadable.folder, unreadable.bytes) == (link, 0)

        load_model(capped, "acme/m1:v1", device="cpu", cache=True)
        assert (elsewhere / "files" / "model.safetensors").stat().st_size == 1 << 20  # its target: untouched
        assert [e.snapshot for e in cache.entries()] == [m1]
