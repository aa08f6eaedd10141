"""A tensor name holding a NUL character: no catalog row can hold it (PostgreSQL refuses NUL in text), and a received
manifest naming one is refused, so a local push refuses the file too, in one line, before anything is recorded."""

from __future__ import annotations

import struct
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


# A lone surrogate (a JSON "\ud800" escape in a safetensors header or a config.json) has no UTF-8 form, so no catalog
# row can hold it either: a tensor name holding one is refused as a NUL is, before any object is written; a
# config.json name holding one is left out of the architecture. (Both used to end in a double traceback: the CLI's
# net for text that is not UTF-8 could not show such a character.)


def _objects(home: Path) -> list[Path]:
    return sorted(p for p in (home / "store" / "objects").rglob("*") if p.is_file())


def _safetensors(path: Path, name: bytes) -> None:
    header = b'{"' + name + b'":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(range(16)))


def test_a_safetensors_tensor_name_holding_a_lone_surrogate_is_refused_before_any_write(
    arc: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    _safetensors(folder / "w.safetensors", b"a\\ud800")
    before = _objects(arc.home)
    result = arc.fail("push", str(folder), "acme/sur:v1")
    assert "lone surrogate" in result.stderr and "w.safetensors" in result.stderr, result.output
    assert len([ln for ln in result.stderr.splitlines() if ln.strip()]) == 1
    assert arc.json("ls") == [] and _objects(arc.home) == before


def test_a_gguf_tensor_name_encoding_a_surrogate_is_refused(arc: Any, tmp_path: Path) -> None:
    folder = tmp_path / "g"
    folder.mkdir()
    _gguf(folder / "q.gguf", "blk.X.0")
    data = (folder / "q.gguf").read_bytes()
    (folder / "q.gguf").write_bytes(data.replace(b"blk.X.0", b"blk\xed\xa0\x800"))  # U+D800 encoded, 3 bytes
    result = arc.fail("push", str(folder), "acme/sur:v1")
    assert "not UTF-8" in result.stderr and "q.gguf" in result.stderr, result.output
    assert arc.json("ls") == []


def test_a_config_json_name_holding_a_lone_surrogate_is_left_out_and_the_push_succeeds(
    arc: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    _safetensors(folder / "w.safetensors", b"a")
    (folder / "config.json").write_text('{"model_type": "bert\\ud800", "architectures": ["BertModel"]}')
    arc("push", str(folder), "acme/cfg:v1")
    assert arc.json("show", "acme/cfg:v1")["architecture"] == {"architectures": ["BertModel"]}
    assert "0 unreferenced" in arc("fsck").stdout
