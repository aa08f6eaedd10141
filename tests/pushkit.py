"""Source folders for push tests, and a spy on which files a push reads as new (archive/ingest.py), shared by the
push-index and proof tests of tests/archive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelarc.archive import ingest as ingest_module


def small_model(folder: Path, *, seed: int, tensors: int, shape: tuple[int, int]) -> Path:
    """``folder`` with a safetensors file of ``tensors`` float32 tensors of ``shape`` and a config.json."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    weights = {f"layers.{i}.weight": rng.standard_normal(shape).astype(np.float32) for i in range(tensors)}
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text('{"model_type": "llama"}\n')
    return folder


def files_read_as_new(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The relative paths every later ingest actually opens and reads as new files, in order."""
    seen: list[str] = []
    real = ingest_module._ingest_file

    def spy(plan, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(plan.rel)
        return real(plan, *args, **kwargs)

    monkeypatch.setattr(ingest_module, "_ingest_file", spy)
    return seen
