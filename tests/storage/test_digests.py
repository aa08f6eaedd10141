"""``sha256_hexdigests`` (two buffers hashed at once on the x86 SHA extensions, hashlib otherwise) gives exactly
hashlib's SHA-256 of every buffer, whatever their lengths and however they pair."""

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelarc.storage import _sha256  # type: ignore[attr-defined]
from modelarc.storage.digests import pairs_well, sha256_hexdigests

# Around the block (64 bytes) and padding (56 bytes) boundaries, where a SHA-256 implementation goes wrong.
EDGES = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096 + 55]


def _hashlib(buffers: list[bytes]) -> list[str]:
    return [hashlib.sha256(b).hexdigest() for b in buffers]


@pytest.mark.parametrize("first", EDGES)
def test_pairs_of_every_edge_length_hash_as_hashlib(first: int) -> None:
    for second in EDGES:
        buffers = [os.urandom(first), os.urandom(second)]
        assert sha256_hexdigests(buffers) == _hashlib(buffers), (first, second)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=7))
def test_any_buffers_hash_as_hashlib(buffers: list[bytes]) -> None:
    assert sha256_hexdigests(buffers) == _hashlib(buffers)


def test_large_buffers_of_similar_length_hash_as_hashlib() -> None:
    buffers = [os.urandom(3 << 20), bytearray(os.urandom((3 << 20) - 7)), memoryview(os.urandom(2 << 20))]
    assert pairs_well(len(buffers[0]), len(buffers[1])) == bool(_sha256.lanes)
    assert sha256_hexdigests(buffers) == _hashlib([bytes(b) for b in buffers])


@pytest.mark.skipif(not _sha256.lanes, reason="this CPU has no SHA extensions")
def test_the_native_pair_hasher_gives_sha256_for_any_number_of_buffers() -> None:
    buffers = [os.urandom(n) for n in (0, 64, 1 << 16, 100, 3, 200_001, 55)]
    for count in range(len(buffers) + 1):
        assert [d.hex() for d in _sha256.digests(buffers[:count])] == _hashlib(buffers[:count])


def test_only_lengths_of_a_similar_size_pair() -> None:
    assert not pairs_well(1000, 499)
    assert pairs_well(1000, 500) == bool(_sha256.lanes)
