"""GGUF files whose meaning depends on the reader are refused at push, as llama.cpp refuses them: a tensor name or a
metadata key that appears twice (which one a load keeps is the reader's choice), a tensor offset that is not a
multiple of the alignment (the format requires it), an alignment given as a bool. Files are built by hand: no GGUF
writer makes them."""

from __future__ import annotations

import io
import struct

import pytest

from modelarc.archive.formats.gguf import read_layout
from modelarc.errors import GGUFFormatError

F32 = 0


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _kv_str(key: str, value: str) -> bytes:
    return _s(key) + struct.pack("<I", 8) + _s(value)


def _tensor(name: str, n: int, offset: int) -> bytes:
    return (
        _s(name)
        + struct.pack("<I", 1)
        + struct.pack("<Q", n)
        + struct.pack("<I", F32)
        + struct.pack("<Q", offset)
    )


def _gguf(kvs: list[bytes], tensors: list[bytes], data: bytes, align: int = 32) -> bytes:
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(kvs) + b"".join(tensors)
    return head + b"\0" * (-len(head) % align) + data


ARCH = _kv_str("general.architecture", "llama")


def _read(raw: bytes) -> object:
    return read_layout(io.BytesIO(raw), "m.gguf", len(raw))


def test_a_plain_file_reads() -> None:
    layout = _read(_gguf([ARCH], [_tensor("a", 8, 0), _tensor("b", 8, 32)], b"\1" * 64))
    assert [t.name for t in layout.tensors] == ["a", "b"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (
            _gguf([ARCH], [_tensor("a", 8, 0), _tensor("a", 8, 32)], b"\1" * 64),
            "tensor name 'a' appears twice",
        ),
        (
            _gguf([ARCH, _kv_str("general.architecture", "gpt2")], [_tensor("a", 8, 0)], b"\1" * 32),
            "appears twice",
        ),
        (_gguf([ARCH], [_tensor("a", 8, 0), _tensor("b", 8, 40)], b"\1" * 96), "not a multiple of 32"),
        (
            _gguf(
                [ARCH, _s("general.alignment") + struct.pack("<I", 7) + b"\1"],
                [_tensor("a", 8, 0)],
                b"\1" * 32,
            ),
            "not a power of two",
        ),
    ],
    ids=["tensor-twice", "key-twice", "unaligned", "bool-alignment"],
)
def test_an_ambiguous_file_is_refused(raw: bytes, says: str) -> None:
    with pytest.raises(GGUFFormatError, match=says):
        _read(raw)
