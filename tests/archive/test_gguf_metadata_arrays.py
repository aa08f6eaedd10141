"""GGUF metadata arrays are read past, not kept: nothing reads their items (a tokenizer's vocabulary and merges are
millions of items), and a Python object per item made a push of a 64 MiB array take 89 s and 645 MB. Their length
is kept (the vocabulary size is shown), and a lie about their structure is still refused."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest

from modelarc.archive.formats.gguf import read_layout
from modelarc.errors import GGUFFormatError

ITEMS = 1_000_000  # as a list of Python ints, over 35 MB


def _write(path: Path, values: np.ndarray, tokens: list[str]) -> Path:
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_array("test.big", values.tolist())
    w.add_token_list(tokens)
    w.add_tensor("a", np.ones(16, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_large_metadata_array_is_read_past_in_bounded_memory(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.gguf", np.arange(ITEMS, dtype=np.uint32), ["a", "bb", "ccc"])
    tracemalloc.start()
    try:
        with open(path, "rb") as fh:
            layout = read_layout(fh, str(path), path.stat().st_size)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak
    assert len(layout.metadata["test.big"]) == ITEMS
    assert len(layout.metadata["tokenizer.ggml.tokens"]) == 3
    assert [t.name for t in layout.tensors] == ["a"]


def test_an_array_that_runs_past_the_file_is_still_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.gguf", np.arange(1000, dtype=np.uint32), ["a"])
    data = bytearray(path.read_bytes())
    count_at = data.index((1000).to_bytes(8, "little"))
    data[count_at : count_at + 8] = (10**9).to_bytes(8, "little")  # the array now claims 4 GB
    path.write_bytes(bytes(data))
    with open(path, "rb") as fh, pytest.raises(GGUFFormatError):
        read_layout(fh, str(path), path.stat().st_size)
