"""A tensor dimension the manifest format cannot hold (docs/FORMAT.md: shapes are signed 64-bit integers) is
refused at push, in one line, before anything is recorded: a safetensors shape of [2**70, 0] (zero elements, so its
bytes match) was archived, and then every pull and verify refused the snapshot's manifest, so a user who deleted the
source after a successful push had lost the file."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.push import _check_reads_back
from modelarc.errors import SourceError


def _safetensors_with_shape(path: Path, shape: list[int]) -> Path:
    """A safetensors file whose tensor ``a`` declares ``shape`` with no bytes, beside a real tensor ``b``: written
    by hand, as no tensor library makes such a shape."""
    header = {
        "a": {"dtype": "F32", "shape": shape, "data_offsets": [0, 0]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + np.ones(2, np.float32).tobytes())
    return path


def test_a_safetensors_dimension_past_the_format_is_refused_before_anything_is_recorded(
    arc: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    _safetensors_with_shape(folder / "model.safetensors", [2**70, 0])
    result = arc.fail("push", str(folder), "acme/huge:v1")
    assert result.exit_code == 4, result.output
    assert "model.safetensors" in result.stderr and "larger than" in result.stderr, result.output
    assert "Traceback" not in result.output
    assert arc.json("ls") == []


def test_the_largest_dimension_the_format_holds_is_archived_and_restored(arc: Any, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    source = _safetensors_with_shape(folder / "model.safetensors", [2**63 - 1, 0])
    arc("push", str(folder), "acme/edge:v1")
    arc("pull", "acme/edge:v1", str(tmp_path / "out"))
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == source.read_bytes()


def test_a_gguf_dimension_past_the_format_is_refused(arc: Any, tmp_path: Path) -> None:
    folder = tmp_path / "g"
    folder.mkdir()
    w = gguf.GGUFWriter(str(folder / "q.gguf"), "llama")
    w.add_tensor("big", np.zeros(0, dtype=np.float32), raw_shape=(0, 2**63))
    w.add_tensor("ok", np.ones(16, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    result = arc.fail("push", str(folder), "acme/huge:v1")
    assert result.exit_code == 4, result.output
    assert "q.gguf" in result.stderr and "larger than" in result.stderr, result.output
    assert arc.json("ls") == []


def test_a_push_refuses_a_manifest_its_own_reader_refuses(tmp_path: Path) -> None:
    """The backstop behind the format readers: whatever they let through, a manifest that ``pull`` could not read
    is never stored."""
    manifest = SnapshotManifest(files=())
    good = manifest.canonical_bytes()
    _check_reads_back(tmp_path, good)  # an empty snapshot reads back
    doc = json.loads(good)
    doc["files"] = [{"path": "../escape", "size": 0, "sha256": "0" * 64, "kind": "other", "chunks": []}]
    with pytest.raises(SourceError, match="would not read back"):
        _check_reads_back(tmp_path, json.dumps(doc).encode())
