"""A load cache entry that is a symlink (moved to another disk and linked back) is removed as a link: rmtree refused
it, so every cached load of that snapshot and every `cache clear` failed, and nothing may be deleted through it."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import transformers
from modelfactory import tiny_llama

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.cache import LoadCache
from modelarc.archive.runtime.models import load_model

IDS = torch.tensor([[2, 3, 4, 5]])


def _pushed(archive: Archive, tmp_path: Path) -> str:
    archive.push(tiny_llama(tmp_path / "llama", seed=1), "acme/llama:v1")
    return "acme/llama:v1"


def _logits(model: transformers.PreTrainedModel) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def _move_entry_out(archive: Archive, ref: str, elsewhere: Path) -> Path:
    """Move the snapshot's entry to ``elsewhere`` and link it back; returns the link."""
    _r, snap = archive.resolve(ref)
    entry = archive.settings.cache_path / "entries" / snap.digest.hex
    shutil.move(entry, elsewhere)
    entry.symlink_to(elsewhere, target_is_directory=True)
    return entry


def test_a_damaged_symlinked_entry_is_unlinked_and_rebuilt(archive: Archive, tmp_path: Path) -> None:
    ref = _pushed(archive, tmp_path)
    expected = _logits(load_model(archive, ref, device="cpu"))
    load_model(archive, ref, device="cpu", cache=True)
    elsewhere = tmp_path / "other-disk" / "entry"
    elsewhere.parent.mkdir()
    link = _move_entry_out(archive, ref, elsewhere)
    (elsewhere / "entry.json").write_text("{garbled")  # the entry must be discarded at the next load
    assert torch.equal(_logits(load_model(archive, ref, device="cpu", cache=True)), expected)
    assert link.is_dir() and not link.is_symlink()  # a fresh entry in the cache itself
    assert (elsewhere / "entry.json").read_text() == "{garbled"  # nothing deleted through the link


def test_cache_clear_unlinks_a_symlinked_entry(archive: Archive, tmp_path: Path) -> None:
    ref = _pushed(archive, tmp_path)
    load_model(archive, ref, device="cpu", cache=True)
    elsewhere = tmp_path / "other-disk"
    link = _move_entry_out(archive, ref, elsewhere)
    removed = LoadCache.of(archive.settings).clear().removed
    assert len(removed) == 1
    assert not link.exists() and not link.is_symlink()
    assert (elsewhere / "entry.json").exists()  # the link is gone, not what it pointed at
