"""A snapshot holding a model in two weight formats (model.safetensors written by safetensors beside model.gguf
written by gguf) lists each format's tensors apart, on SQLite and PostgreSQL: `show` (text and --json) and the model
card give the safetensors tensors' dtypes without the GGUF tensors among them, though both formats name dtypes F32
and F16. `dtypes` and `parameter_count` stay the catalog's figures over every tensor (docs/FORMAT.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelfactory import write_mixed_model

ArchiveCli = Any  # tests/cli/conftest.py

SAFETENSORS = {"tensors": 2, "parameters": 144, "dtypes": {"F16": 16, "F32": 128}}
GGUF = {"tensors": 2, "parameters": 320, "dtypes": {"F16": 256, "F32": 64}}


def test_show_lists_each_weight_formats_tensors_apart(arc: ArchiveCli, tmp_path: Path) -> None:
    arc("push", write_mixed_model(tmp_path / "m"), "acme/mixed:v1")

    shown = arc.json("show", "acme/mixed:v1")
    assert shown["tensors_by_format"] == {"gguf": GGUF, "safetensors": SAFETENSORS}
    assert (shown["tensor_count"], shown["parameter_count"]) == (4, 464)  # the catalog's: every format

    lines = arc("show", "acme/mixed:v1").stdout.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith("parameters:"))
    assert " ".join(lines[at + 1].split()) == "gguf: 320 (320) in 2 tensors; F16 256, F32 64"
    assert " ".join(lines[at + 2].split()) == "safetensors: 144 (144) in 2 tensors; F16 16, F32 128"
    assert "F32 192" not in "\n".join(lines)  # the two formats' F32 tensors are not one list


def test_the_model_card_gives_each_weight_formats_dtypes_apart(arc: ArchiveCli, tmp_path: Path) -> None:
    arc("push", write_mixed_model(tmp_path / "m"), "acme/mixed:v1")
    card = arc("export", "acme/mixed:v1", "--format", "model-card").stdout
    assert "| parameters | 464 (gguf 320: F16 256, F32 64; safetensors 144: F16 16, F32 128) |" in card


def test_a_single_format_snapshot_is_shown_as_before(arc: ArchiveCli, tmp_path: Path) -> None:
    from modelfactory import MIXED_SAFETENSORS, write_model

    arc("push", write_model(tmp_path / "m", dict(MIXED_SAFETENSORS)), "acme/one:v1")
    shown = arc.json("show", "acme/one:v1")
    assert shown["tensors_by_format"] == {"safetensors": SAFETENSORS}
    assert shown["dtypes"] == SAFETENSORS["dtypes"]
    [line] = [ln for ln in arc("show", "acme/one:v1").stdout.splitlines() if ln.startswith("parameters:")]
    assert line.split() == ["parameters:", "144", "(144);", "F16", "16,", "F32", "128"]
