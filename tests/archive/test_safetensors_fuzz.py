"""Any mangled safetensors header gives SafetensorsFormatError, never another exception."""

import json
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from modelarc.archive.formats.safetensors import parse_layout, read_header_length
from modelarc.errors import SafetensorsFormatError

GOOD_HEADER = json.dumps({
    "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    "b": {"dtype": "BF16", "shape": [4], "data_offsets": [16, 24]},
}).encode()
GOOD = struct.pack("<Q", len(GOOD_HEADER)) + GOOD_HEADER + bytes(24)


def _parse(blob: bytes) -> None:
    try:
        n = read_header_length("f.safetensors", blob[:8], len(blob))
        parse_layout("f.safetensors", blob[:n], len(blob))
    except SafetensorsFormatError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes(blob: bytes) -> None:
    _parse(blob)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(GOOD) - 1), st.integers(0, 255))
def test_one_mangled_byte(pos: int, value: int) -> None:
    blob = bytearray(GOOD)
    blob[pos] = value
    _parse(bytes(blob))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["dtype", "shape", "data_offsets", "x"]), json_values, max_size=4))
def test_arbitrary_tensor_entries(entry: dict) -> None:
    header = json.dumps({"t": entry}).encode()
    _parse(struct.pack("<Q", len(header)) + header + bytes(64))
