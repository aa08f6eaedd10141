"""A tensor name holding a NUL character: no catalog row can hold it (PostgreSQL refuses NUL in text), and a received
manifest naming one is refused, so a local push refuses the file too, in one line, before anything is recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors.numpy import save_file


def _gguf(path: Path, name: str) -> Path:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor(name, np.ones(16, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_safetensors_file_with_a_nul_in_a_tensor_name_is_refused(arc: Any, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    save_file(
        {"a\x00b": np.zeros((2, 2), np.float32), "ok": np.ones(3, np.float32)}, str(folder / "w.safetensors")
    )
    result = arc.fail("push", str(folder), "acme/nul:v1")
    assert "NUL" in result.stderr and "w.safetensors" in result.stderr, result.output
    assert arc.json("ls") == []


def test_a_gguf_file_with_a_nul_in_a_tensor_name_is_refused(arc: Any, tmp_path: Path) -> None:
    folder = tmp_path / "g"
    folder.mkdir()
    _gguf(folder / "q.gguf", "blk\x00.0")
    result = arc.fail("push", str(folder), "acme/nul:v1")
    assert "NUL" in result.stderr and "q.gguf" in result.stderr, result.output
    assert arc.json("ls") == []
