import json
import struct
from pathlib import Path

import numpy as np
import pytest
from modelfactory import tiny_tensors, write_model

from modelarc.archive.formats.safetensors import parse_layout, read_header_length
from modelarc.errors import SafetensorsFormatError


def _file(header: dict, data: bytes, pad: int = 0) -> bytes:
    raw = json.dumps(header).encode() + b" " * pad
    return struct.pack("<Q", len(raw)) + raw + data


def _parse(blob: bytes, name: str = "m.safetensors"):
    header_length = read_header_length(name, blob[:8], len(blob))
    return parse_layout(name, blob[:header_length], len(blob))


def test_real_file_parses_in_file_order(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m")
    blob = (folder / "model.safetensors").read_bytes()
    layout = _parse(blob)
    assert {t.name for t in layout.tensors} == set(tiny_tensors())
    assert layout.tensors[0].begin == layout.header_length
    assert layout.tensors[-1].end == len(blob)
    assert layout.metadata == {"format": "pt"}


@pytest.mark.parametrize(
    "header, data, message",
    [
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4, "out of range"),
        ({"w": {"dtype": "F99", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, "unknown dtype"),
        ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "do not match shape"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
            "overlaps",
        ),
        (
            {
                "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
            },
            b"\0" * 12,
            "gap",
        ),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8, "after the last tensor"),
        ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4, "non-negative"),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, b"\0" * 4, "data_offsets"),
        ({"w": [1, 2]}, b"", "not a JSON object"),
        ({"__metadata__": {"a": 1}}, b"", "__metadata__"),
    ],
)
def test_lying_headers_name_the_file_and_problem(header: dict, data: bytes, message: str) -> None:
    with pytest.raises(SafetensorsFormatError, match=message) as err:
        _parse(_file(header, data))
    assert "m.safetensors" in str(err.value)


def test_error_names_the_tensor() -> None:
    with pytest.raises(SafetensorsFormatError, match="'layer.7'"):
        _parse(_file({"layer.7": {"dtype": "F32", "shape": [5], "data_offsets": [0, 8]}}, b"\0" * 8))


def test_header_length_past_end_of_file() -> None:
    blob = struct.pack("<Q", 10_000) + b"{}"
    with pytest.raises(SafetensorsFormatError, match="past the end"):
        _parse(blob)


def test_invalid_json_header() -> None:
    raw = b"{not json"
    with pytest.raises(SafetensorsFormatError, match="not valid JSON"):
        _parse(struct.pack("<Q", len(raw)) + raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}',
        b'{"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}}',
    ],
    ids=["tensor", "field"],
)
def test_a_header_naming_a_key_twice_says_so(raw: bytes) -> None:
    """json.loads keeps the last of two: a tensor named twice was refused as "a gap of 8 bytes before" it."""
    with pytest.raises(SafetensorsFormatError, match="header names '(w|dtype)' twice"):
        _parse(struct.pack("<Q", len(raw)) + raw + bytes(16))


def test_too_short_file() -> None:
    with pytest.raises(SafetensorsFormatError, match="too short"):
        _parse(b"\x01\x02")


def test_zero_sized_tensors_are_allowed() -> None:
    layout = _parse(
        _file(
            {
                "e": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]},
                "w": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},
            },
            b"ab",
        )
    )
    assert [t.name for t in layout.tensors] == ["e", "w"]


def test_numpy_written_bf16_size_check() -> None:
    arr = np.zeros(3, dtype=np.uint16)
    layout = _parse(_file({"b": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]}}, arr.tobytes()))
    assert layout.tensors[0].nbytes == 6
