"""The native half of the float-planes codec: the plane split/join follows the specification's formulas, and the
Huffman-only zstd frames are ordinary RFC 8878 frames that libzstd reads back byte for byte."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from modelarc.storage.codecs import _planes  # type: ignore[attr-defined]

BLOCK = 128 << 10


def unframe(frame: bytes, length: int) -> bytes:
    assert zstandard.frame_content_size(frame) == length
    out: bytes = zstandard.ZstdDecompressor().decompress(frame, max_output_size=max(length, 1))
    return out


def roundtrip(data: bytes) -> bytes:
    frame: bytes = _planes.huffman_frame(data)
    assert unframe(frame, len(data)) == data
    return frame


def order0_bytes(data: np.ndarray, block: int = BLOCK) -> float:
    """Order-0 entropy of each block, in bytes: what no Huffman coder of those blocks can beat."""
    total = 0.0
    for i in range(0, len(data), block):
        counts = np.bincount(data[i : i + block], minlength=256)
        p = counts[counts > 0] / counts.sum()
        total += float(-(counts[counts > 0] * np.log2(p)).sum()) / 8
    return total


# ---------------------------------------------------------------------------------------------------------
# Frames libzstd reads back
# ---------------------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=5000))
def test_any_bytes_round_trip(data: bytes) -> None:
    roundtrip(data)


@settings(max_examples=60, deadline=None)
@given(
    symbols=st.lists(st.integers(0, 255), min_size=1, max_size=40),
    length=st.sampled_from([1, 5, 6, 1023, 1024, 1025, 16384, BLOCK - 1, BLOCK, BLOCK + 1, 300_000]),
    seed=st.integers(0, 2**32 - 1),
)
def test_few_symbols_at_the_block_and_stream_size_edges(symbols: list[int], length: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    weights = rng.random(len(symbols)) ** 4  # skewed, so that some codes get long
    roundtrip(rng.choice(np.array(symbols, np.uint8), length, p=weights / weights.sum()).tobytes())


@pytest.mark.parametrize("every", [1, 3, 997, 20_000, 200_000])
def test_bytes_above_128_are_cut_out_wherever_they_fall(every: int) -> None:
    """The direct tree form names symbols 0-128: larger bytes go out raw, however many and wherever."""
    rng = np.random.default_rng(every)
    data = np.clip(rng.normal(118, 3, 600_000), 0, 128).astype(np.uint8)
    data[::every] = rng.integers(129, 256, len(data[::every]))
    roundtrip(data.tobytes())


def test_codes_longer_than_eleven_bits_are_limited() -> None:
    """A Fibonacci-like distribution wants codes of 20+ bits; Huff0 allows 11, and the frame must still read."""
    counts = [1, 1]
    while len(counts) < 30:
        counts.append(counts[-1] + counts[-2])
    data = np.repeat(np.arange(30, dtype=np.uint8), counts)
    np.random.default_rng(0).shuffle(data)
    roundtrip(data.tobytes())


def test_runs_become_rle_blocks_and_cost_almost_nothing() -> None:
    frame = roundtrip(bytes(1 << 20))
    assert len(frame) < 64


def test_gaussian_exponents_code_about_as_small_as_huffman_only_deflate() -> None:
    """What modelarc 1 wrote for exponents (deflate, 15-bit codes, a table per 32 KiB) is the bar; Huff0's 11-bit
    codes cost a little, adaptive block ends win it back. Huffman codes stay a few percent above the entropy."""
    values = np.random.default_rng(1).normal(0, 0.02, 2 << 20).astype(np.float32)
    exponents = ((values.view(np.uint32) >> 23) & 0xFF).astype(np.uint8)
    frame = roundtrip(exponents.tobytes())
    deflate = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_HUFFMAN_ONLY)
    assert len(frame) < 1.003 * len(deflate.compress(exponents.tobytes()) + deflate.flush())
    assert len(frame) < 1.025 * order0_bytes(exponents)


# ---------------------------------------------------------------------------------------------------------
# Split and join against the specification's formulas (docs/FORMAT.md, float planes)
# ---------------------------------------------------------------------------------------------------------


def spec_planes(data: bytes, kind: int) -> list[bytes]:
    if kind == 3:
        u = np.frombuffer(data, "<u4").astype(np.uint64)
        planes = [(u >> 23) & 0xFF, ((u >> 24) & 0x80) | ((u >> 16) & 0x7F), (u >> 8) & 0xFF, u & 0xFF]
    else:
        u = np.frombuffer(data, "<u2").astype(np.uint32)
        if kind == 1:
            planes = [(u >> 7) & 0xFF, ((u >> 8) & 0x80) | (u & 0x7F)]
        else:
            planes = [(u >> 10) & 0x1F, (u >> 8) & 0x83, u & 0xFF]
    return [p.astype(np.uint8).tobytes() for p in planes]


@pytest.mark.parametrize("kind,width", [(1, 2), (2, 2), (3, 4)])
def test_split_and_join_follow_the_specification(kind: int, width: int) -> None:
    data = np.random.default_rng(kind).bytes(width * 100_003)
    n = len(data) // width
    planes = _planes.split(data, kind, n)
    assert planes == spec_planes(data, kind)
    assert _planes.joined(planes, kind, n, b"tail") == data + b"tail"


def spec_join(planes: list[np.ndarray], kind: int) -> bytes:
    """The specification's reader formulas, which ignore plane bits outside each field."""
    p = [x.astype(np.uint32) for x in planes]
    if kind == 1:
        return (((p[1] & 0x80) << 8) | (p[0] << 7) | (p[1] & 0x7F)).astype("<u2").tobytes()
    if kind == 2:
        return (((p[1] & 0x83) << 8) | ((p[0] & 0x1F) << 10) | p[2]).astype("<u2").tobytes()
    u = ((p[1] & 0x80) << 24) | (p[0] << 23) | ((p[1] & 0x7F) << 16) | (p[2] << 8) | p[3]
    return u.astype("<u4").tobytes()


@pytest.mark.parametrize("kind,count", [(1, 2), (2, 3), (3, 4)])
@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 4095, 4097, 3 * 4096 + 21])
def test_join_follows_the_specification_for_any_plane_bytes(kind: int, count: int, n: int) -> None:
    planes = [np.random.default_rng(n + k).integers(0, 256, n, dtype=np.uint8) for k in range(count)]
    assert _planes.joined([p.tobytes() for p in planes], kind, n, b"") == spec_join(planes, kind)


@pytest.mark.parametrize("kind,count", [(1, 2), (2, 3), (3, 4)])
def test_join_reads_a_plane_given_as_none_as_zeros(kind: int, count: int) -> None:
    n = 2 * 4096 + 5
    planes = [np.random.default_rng(k).integers(0, 256, n, dtype=np.uint8) for k in range(count)]
    for k in range(count):
        zeroed = [np.zeros(n, np.uint8) if i == k else p for i, p in enumerate(planes)]
        given_as = [None if i == k else p.tobytes() for i, p in enumerate(planes)]
        out = bytearray(n * (4 if kind == 3 else 2))
        _planes.joined(given_as, kind, n, b"", out)
        assert out == spec_join(zeroed, kind)


@pytest.mark.parametrize(
    "data", [b"", bytes(1000), bytes(999) + b"\x81", b"\xff" + bytes(5000), bytes(range(256))]
)
def test_max_byte(data: bytes) -> None:
    assert _planes.max_byte(data) == max(data, default=0)


def test_order0_bits_is_the_entropy_of_the_sampled_blocks() -> None:
    data = np.random.default_rng(3).integers(0, 16, 1 << 16, dtype=np.uint8)  # 4 bits of entropy a byte
    assert abs(_planes.order0_bits(data.tobytes()) - 4.0) < 0.01
    assert abs(_planes.order0_bits(data.tobytes(), 4) - 4.0) < 0.02
    half = bytes(1 << 15) + data[: 1 << 15].tobytes()  # zeros, then the 4-bit bytes: 4 KiB blocks alternate
    assert _planes.order0_bits(half, 1) > 1.5
    assert _planes.order0_bits(b"") == 0.0


def test_split_and_join_refuse_impossible_arguments() -> None:
    with pytest.raises(ValueError):
        _planes.split(bytes(10), 4, 1)
    with pytest.raises(ValueError):
        _planes.split(bytes(10), 1, 6)
    with pytest.raises(ValueError):
        _planes.joined([bytes(4), bytes(5)], 1, 5, b"")  # a plane shorter than the element count
    with pytest.raises(ValueError):
        _planes.joined([bytes(5)], 1, 5, b"")  # BF16 has two planes
