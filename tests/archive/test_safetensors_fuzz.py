"""Any mangled safetensors header gives SafetensorsFormatError, never another exception, and our verdict is the
reference implementation's: the `safetensors` library (Rust) is the oracle for accept/refuse and for the tensors
found, so a parser that accepted everything, or refused too much, fails here."""

import json
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import deserialize

from modelarc.archive.formats.safetensors import parse_layout, read_header_length
from modelarc.errors import SafetensorsFormatError

GOOD_HEADER = json.dumps({
    "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    "b": {"dtype": "BF16", "shape": [4], "data_offsets": [16, 24]},
}).encode()
GOOD = struct.pack("<Q", len(GOOD_HEADER)) + GOOD_HEADER + bytes(24)


def _reference(blob: bytes) -> list[tuple[str, str, list[int], int]] | None:
    """(name, dtype, shape, byte length) per tensor as the safetensors library reads ``blob``; None if it refuses."""
    try:
        tensors = deserialize(blob)
    except Exception:  # noqa: BLE001 - SafetensorError and friends: the library refuses the file
        return None
    return sorted((name, t["dtype"], list(t["shape"]), len(t["data"])) for name, t in tensors)


def _parse(blob: bytes) -> None:
    try:
        n = read_header_length("f.safetensors", blob[:8], len(blob))
        layout = parse_layout("f.safetensors", blob[:n], len(blob))
        ours = sorted((t.name, t.dtype, list(t.shape), t.nbytes) for t in layout.tensors)
    except SafetensorsFormatError:
        ours = None
    assert ours == _reference(blob)


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


entries = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F32", "BF16", "F16", "U8", "I64", "BOOL"]),
        "shape": st.lists(st.integers(0, 4), max_size=2),
        "data_offsets": st.lists(st.integers(0, 40), min_size=2, max_size=2),
    }
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from("abc"), entries, min_size=1, max_size=3), st.integers(0, 48))
def test_generated_layouts_with_gaps_overlaps_and_wrong_sizes(tensors: dict, data_size: int) -> None:
    header = json.dumps(tensors).encode()
    _parse(struct.pack("<Q", len(header)) + header + bytes(data_size))


_BYTES = {"F32": 4, "BF16": 2, "F16": 2, "U8": 1}


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(_BYTES)), st.integers(0, 4), st.integers(0, 24)), min_size=1, max_size=3
    ),
    st.integers(0, 8),
)
def test_well_sized_tensors_at_random_offsets(specs: list[tuple[str, int, int]], slack: int) -> None:
    """Each entry's byte length matches its shape x dtype, so only placement (gaps, overlaps, coverage) is judged."""
    tensors = {
        f"t{i}": {"dtype": dtype, "shape": [n], "data_offsets": [begin, begin + n * _BYTES[dtype]]}
        for i, (dtype, n, begin) in enumerate(specs)
    }
    end = max(e["data_offsets"][1] for e in tensors.values())
    header = json.dumps(tensors).encode()
    _parse(struct.pack("<Q", len(header)) + header + bytes(max(0, end - slack)))
