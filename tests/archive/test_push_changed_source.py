"""A file rewritten in place while a push reads it (same size, other bytes) is refused: the bytes read were a mix
of two versions the file never held at once, and the snapshot recorded that mix as the file (a file that grew was
already refused). The rewrite is made from the push's own progress callback, after its first chunk was read, so
the test does not race the reader."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest

from modelarc.archive.repository import Archive
from modelarc.errors import SourceError

SIZE = 20 * 1024 * 1024  # three 8 MiB chunks: the rewrite lands while the file is being read


def _source(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(os.urandom(SIZE))
    return folder / "weights.bin"


def test_a_file_rewritten_in_place_during_the_push_is_refused(archive: Archive, tmp_path: Path) -> None:
    path = _source(tmp_path)
    done = []

    def rewrite(_n: int) -> None:
        if not done:
            done.append(True)
            mtime = path.stat().st_mtime_ns
            with open(path, "r+b") as f:  # same size: only the bytes and the times change
                f.seek(SIZE - 4096)
                f.write(os.urandom(4096))
            os.utime(path, ns=(mtime, mtime + 1_000_000_000))

    with pytest.raises(SourceError, match="changed while being read"):
        archive.push(path.parent, "acme/moving:v1", progress=rewrite)
    assert done
    assert list(archive.iter_snapshot_labels()) == []


def test_a_file_left_alone_during_the_push_is_archived(archive: Archive, tmp_path: Path) -> None:
    path = _source(tmp_path)
    seen = []
    archive.push(path.parent, "acme/still:v1", progress=seen.append)
    assert sum(seen) == SIZE
    archive.pull("acme/still:v1", tmp_path / "out")
    assert (tmp_path / "out" / "weights.bin").read_bytes() == path.read_bytes()


# A file rewritten between the moment the push parsed its header (every header is parsed before the first object
# is written, archive/ingest.py plan_files) and the moment it reads the file: the manifest listed the tensors of
# the old header beside the bytes of the new one (GGUF: no digest of the parsed header was kept, as safetensors
# keeps one). The rewrite is made while an earlier file (sorted first) is being read.


def _gguf_bytes(tmp_path: Path, arch: str, tensors: dict[str, np.ndarray]) -> bytes:
    path = tmp_path / f"{arch}-{'-'.join(tensors)}.gguf"
    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(128)
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def _rewrite_on_call(path: Path, data: bytes, call: int) -> Callable[[int], None]:
    """A progress callback that rewrites ``path`` in place (same size) on its ``call``-th call."""
    calls: list[int] = []

    def progress(_n: int) -> None:
        calls.append(_n)
        if len(calls) == call:
            with open(path, "r+b") as f:
                f.write(data)

    return progress


def test_a_gguf_header_rewritten_between_its_parse_and_its_read_is_refused(
    archive: Archive, tmp_path: Path
) -> None:
    old = _gguf_bytes(tmp_path, "llama", {"aa": np.ones(8, np.float32), "bb": np.ones(8, np.float32)})
    new = _gguf_bytes(tmp_path, "llama", {"zz": np.ones(8, np.int32), "yy": np.ones(8, np.int32)})
    assert len(old) == len(new) and old != new
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "a.bin").write_bytes(os.urandom(SIZE))  # read first: b.gguf's header is parsed by then
    (folder / "b.gguf").write_bytes(old)
    with pytest.raises(SourceError, match=r"b\.gguf: file changed while being read \(header\)"):
        archive.push(folder, "acme/gguf-race:v1", progress=_rewrite_on_call(folder / "b.gguf", new, 1))
    assert list(archive.iter_snapshot_labels()) == []


def test_the_architecture_recorded_is_the_archived_config_json_s(archive: Archive, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert", "architectures": ["BertModel"]}')
    (folder / "z.bin").write_bytes(os.urandom(SIZE))  # read after config.json
    edited = b'{"model_type": "gpt2", "architectures": ["GPT2Model"]}'
    assert len(edited) == (folder / "config.json").stat().st_size
    # call 1 is config.json's one chunk, call 2 the first of z.bin's: config.json has been read and archived
    archive.push(folder, "acme/cfg-race:v1", progress=_rewrite_on_call(folder / "config.json", edited, 2))
    assert (folder / "config.json").read_bytes() == edited
    archive.pull("acme/cfg-race:v1", tmp_path / "out")
    stored = json.loads((tmp_path / "out" / "config.json").read_text())
    assert stored["model_type"] == "bert"
    assert archive.show("acme/cfg-race:v1").architecture["model_type"] == "bert"


def test_the_architecture_recorded_is_the_archived_gguf_header_s(archive: Archive, tmp_path: Path) -> None:
    tensors = {"aa": np.ones(8, np.float32)}
    old, new = _gguf_bytes(tmp_path, "llama", tensors), _gguf_bytes(tmp_path, "gemma", tensors)
    assert len(old) == len(new) and old != new
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "a.gguf").write_bytes(old)
    (folder / "z.bin").write_bytes(os.urandom(SIZE))  # read after a.gguf (three chunks: header, tensor, pad)
    archive.push(folder, "acme/gguf-arch:v1", progress=_rewrite_on_call(folder / "a.gguf", new, 4))
    assert (folder / "a.gguf").read_bytes() == new
    assert archive.show("acme/gguf-arch:v1").architecture["model_type"] == "llama"
