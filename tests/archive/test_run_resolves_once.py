"""A REF is resolved once per use: a tag moved by someone else while `run` (or an opened snapshot) is at work does not
make what it reports, or signs, name a snapshot other than the one it read (archive/runtime/runs.py, loading.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers
from modelfactory import tiny_gpt2

from modelarc.archive.repository import Archive
from modelarc.archive.runtime.loading import open_snapshot
from modelarc.archive.runtime.runs import GenerationParams, generate, record_run, rerun

PROMPT = "the model was"
WORDS = ("<unk>", "<pad>", "the", "model", "was", "trained", "in", "2021", "2023", "on", "news", "what", "year", "is")


def _two_snapshots(archive: Archive, tmp_path: Path) -> tuple[str, str]:
    """acme/race:v1 on snapshot A and acme/race:b on snapshot B: two tiny GPT-2s that continue PROMPT differently."""
    ids = []
    for seed, tag in ((1, "v1"), (2, "b")):
        folder = tiny_gpt2(tmp_path / tag, WORDS)
        config = transformers.GPT2Config.from_pretrained(folder)
        config.initializer_range = 1.0  # weights far from uniform: the two seeds' continuations differ
        torch.manual_seed(seed)
        transformers.GPT2LMHeadModel(config).save_pretrained(folder)
        archive.push(folder, f"acme/race:{tag}")
        ids.append(archive.resolve(f"acme/race:{tag}")[1].digest)
    return ids[0], ids[1]


def _move_v1_after_its_first_resolve(archive: Archive, monkeypatch: pytest.MonkeyPatch, to: str) -> list[str]:
    """Another user's `modelarc tag acme/race@B v1`, right after the first lookup of acme/race:v1 (the real lookup
    and the real tag move: only their timing is arranged)."""
    real = Archive.resolve
    moved: list[str] = []

    def resolve_then_move(self: Archive, ref: object) -> object:
        found = real(self, ref)  # type: ignore[arg-type]
        if str(ref) == "acme/race:v1" and not moved:
            moved.append(str(ref))
            archive.tag(f"acme/race@{to}", "v1")
        return found

    monkeypatch.setattr(Archive, "resolve", resolve_then_move)
    return moved


def test_a_recorded_run_names_the_snapshot_that_ran_though_its_tag_moves_meanwhile(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = _two_snapshots(archive, tmp_path)
    params = GenerationParams(max_new_tokens=8, device="cpu")
    out_a = generate(archive, f"acme/race@{a}", PROMPT, params).text
    assert out_a != generate(archive, f"acme/race@{b}", PROMPT, params).text
    moved = _move_v1_after_its_first_resolve(archive, monkeypatch, b)
    result = generate(archive, "acme/race:v1", PROMPT, params)
    monkeypatch.undo()
    assert moved and archive.resolve("acme/race:v1")[1].digest == b  # the tag did move, mid-run
    assert (result.snapshot, result.text) == (a, out_a)  # all of it snapshot A's, as resolved first
    _record, again, identical = rerun(archive, record_run(archive, result))
    assert identical and again.snapshot == a


def test_an_opened_snapshot_describes_itself_after_its_tag_moves(archive: Archive, tmp_path: Path) -> None:
    a, b = _two_snapshots(archive, tmp_path)
    handle = open_snapshot(archive, "acme/race:v1")
    archive.tag(f"acme/race@{b}", "v1")
    assert handle.id == a and handle.info.snapshot == a and "v1" not in handle.info.tags
