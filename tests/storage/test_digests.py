"""``sha256_hexdigests`` (two buffers hashed at once on the x86 SHA extensions, hashlib otherwise) gives exactly
hashlib's SHA-256 of every buffer, whatever their lengths and however they pair; ``update_and_digest`` (a running
stream and a buffer hashed at once) gives exactly hashlib's digest of the buffer and of everything fed to the
stream, whatever partial block the stream carries; ``update_both`` (two running streams fed the same buffer) leaves each exactly as hashlib's, whatever
partial block each carries."""

import hashlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelarc.storage import _sha256, digests  # type: ignore[attr-defined]
from modelarc.storage.digests import (
    choose_pairing,
    pairing_pays,
    pairs_well,
    sha256_hexdigests,
    sha256_stream,
    update_and_digest,
    update_both,
)

# Around the block (64 bytes) and padding (56 bytes) boundaries, where a SHA-256 implementation goes wrong.
EDGES = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096 + 55]


def _hashlib(buffers: list[bytes]) -> list[str]:
    return [hashlib.sha256(b).hexdigest() for b in buffers]


# Whether pairs are hashed natively is measured per machine (``pairing_pays``): the tests take both answers, so the
# paired code is tested on a machine where hashlib wins, and the hashlib path where pairing wins.
PAIRING = [
    pytest.param(False, id="hashlib"),
    pytest.param(True, id="paired", marks=pytest.mark.skipif(not _sha256.lanes, reason="no SHA extensions")),
]


@pytest.fixture(params=PAIRING)
def pairing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    answer: bool = request.param
    monkeypatch.setattr(digests, "pairing_pays", lambda: answer)
    return answer


@pytest.mark.parametrize("first", EDGES)
def test_pairs_of_every_edge_length_hash_as_hashlib(first: int, pairing: bool) -> None:
    for second in EDGES:
        buffers = [os.urandom(first), os.urandom(second)]
        assert sha256_hexdigests(buffers) == _hashlib(buffers), (first, second)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=7))
def test_any_buffers_hash_as_hashlib(buffers: list[bytes]) -> None:
    assert sha256_hexdigests(buffers) == _hashlib(buffers)


def test_large_buffers_of_similar_length_hash_as_hashlib(pairing: bool) -> None:
    buffers = [os.urandom(3 << 20), bytearray(os.urandom((3 << 20) - 7)), memoryview(os.urandom(2 << 20))]
    assert pairs_well(len(buffers[0]), len(buffers[1])) == pairing
    assert sha256_hexdigests(buffers) == _hashlib([bytes(b) for b in buffers])


@pytest.mark.skipif(not _sha256.lanes, reason="this CPU has no SHA extensions")
def test_the_native_pair_hasher_gives_sha256_for_any_number_of_buffers() -> None:
    buffers = [os.urandom(n) for n in (0, 64, 1 << 16, 100, 3, 200_001, 55)]
    for count in range(len(buffers) + 1):
        assert [d.hex() for d in _sha256.digests(buffers[:count])] == _hashlib(buffers[:count])


def test_only_lengths_of_a_similar_size_pair(pairing: bool) -> None:
    assert not pairs_well(1000, 499)
    assert pairs_well(1000, 500) == pairing


def test_pairing_is_chosen_only_for_a_clear_gain() -> None:
    assert choose_pairing(0.80, 1.0)
    assert not choose_pairing(0.96, 1.0)  # a tie, within the noise: hashlib
    assert not choose_pairing(1.2, 1.0)


def test_pairing_is_measured_once_and_never_chosen_without_the_sha_extensions(monkeypatch: pytest.MonkeyPatch) -> None:
    timed: list[tuple[float, float]] = []

    def rule(paired: float, alone: float) -> bool:
        timed.append((paired, alone))
        return True

    monkeypatch.setattr(digests, "choose_pairing", rule)
    pairing_pays.cache_clear()
    try:
        assert pairing_pays() == bool(_sha256.lanes)
        assert pairing_pays() == bool(_sha256.lanes)  # remembered: the calibration runs once
        if _sha256.lanes:
            assert len(timed) == 1 and all(0 < t < 1 for t in timed[0]), timed
        monkeypatch.setattr(_sha256, "lanes", 0)
        pairing_pays.cache_clear()
        assert not pairing_pays()
    finally:
        pairing_pays.cache_clear()  # the real answer again, measured at the next use


def test_a_stream_is_native_exactly_where_pairing_pays(pairing: bool) -> None:
    assert isinstance(sha256_stream(), _sha256.Sha256Stream) == pairing


# Both kinds of stream, so the hashlib fallback (every CPU without the SHA extensions) is tested here too.
STREAMS = [
    pytest.param(True, id="native", marks=pytest.mark.skipif(not _sha256.lanes, reason="no SHA extensions")),
    pytest.param(False, id="hashlib"),
]
DATA = os.urandom(1 << 16)


@pytest.mark.parametrize("native", STREAMS)
def test_a_buffer_after_every_carried_partial_block_hashes_as_hashlib(native: bool) -> None:
    """The stream's lane starts ``carried`` bytes into its block, the buffer's own at 0: every pairing of the two
    around the padding (55/56) and block (64) edges."""
    for carried in range(0, 130):
        for length in range(0, 201):
            stream, want = sha256_stream(native=native), hashlib.sha256()
            stream.update(DATA[:carried])
            want.update(DATA[:carried])
            chunk = DATA[carried : carried + length]
            assert update_and_digest(stream, chunk) == hashlib.sha256(chunk).digest(), (carried, length)
            want.update(chunk)
            assert stream.hexdigest() == want.hexdigest(), (carried, length)


@pytest.mark.parametrize("native", STREAMS)
def test_partial_blocks_carried_across_many_updates_hash_as_hashlib(native: bool) -> None:
    stream, want, at = sha256_stream(native=native), hashlib.sha256(), 0
    for i, length in enumerate([1, 54, 1, 8, 63, 0, 65, 127, 129, 55, 56, 57, 3, 200, 64, 4096 + 7, 2047, 2049]):
        piece = DATA[at : at + length]
        at += length
        if i % 3 == 2:
            stream.update(piece)
        else:
            assert update_and_digest(stream, piece) == hashlib.sha256(piece).digest(), (i, length)
        want.update(piece)
        assert stream.digest() == want.digest(), (i, length)  # a digest mid-stream does not disturb it


@pytest.mark.parametrize("native", STREAMS)
def test_large_views_into_a_reused_buffer_hash_as_hashlib(native: bool) -> None:
    """What ingest feeds: memoryviews into one reused 8 MiB bytearray, the GIL released for each."""
    owner = bytearray(os.urandom(8 << 20))
    stream, want = sha256_stream(native=native), hashlib.sha256()
    for length in (8 << 20, 12_345, (8 << 20) - 1, 1 << 20):
        view = memoryview(owner)[:length]
        assert update_and_digest(stream, view) == hashlib.sha256(view).digest()
        want.update(view)
        view.release()
    assert stream.hexdigest() == want.hexdigest()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=700), st.booleans()), max_size=12), st.booleans())
def test_any_sequence_of_updates_hashes_as_hashlib(steps: list[tuple[bytes, bool]], native: bool) -> None:
    native = native and bool(_sha256.lanes)
    stream, want = sha256_stream(native=native), hashlib.sha256()
    for data, paired in steps:
        if paired:
            assert update_and_digest(stream, data) == hashlib.sha256(data).digest()
        else:
            stream.update(data)
        want.update(data)
    assert stream.hexdigest() == want.hexdigest()
    assert stream.digest() == want.digest()


@pytest.mark.parametrize("native", STREAMS)
def test_a_copy_goes_on_without_the_original(native: bool) -> None:
    stream = sha256_stream(native=native)
    stream.update(DATA[:100])
    twin = stream.copy()
    update_and_digest(twin, DATA[100:300])
    assert stream.hexdigest() == hashlib.sha256(DATA[:100]).hexdigest()
    assert twin.hexdigest() == hashlib.sha256(DATA[:300]).hexdigest()


@pytest.mark.skipif(not _sha256.lanes, reason="this CPU has no SHA extensions")
def test_the_native_stream_takes_initial_data_and_reads_as_hashlib() -> None:
    stream = _sha256.Sha256Stream(b"abc")
    assert stream.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    assert (stream.name, stream.digest_size, stream.block_size) == ("sha256", 32, 64)
    with pytest.raises(TypeError):
        _sha256.update_and_digest(hashlib.sha256(), b"x")  # only its own streams


@pytest.mark.parametrize("native", STREAMS)
def test_two_streams_carrying_any_partial_blocks_take_a_buffer_as_hashlib(native: bool) -> None:
    """Each stream tops up its own begun block first, so their lanes start at different offsets of the buffer:
    every pair of carried lengths, around the block edge, for buffers around the padding and block edges."""
    for carried_a in (0, 1, 55, 56, 63):
        for carried_b in range(0, 66):
            for length in (0, 1, 8, 55, 56, 63, 64, 65, 127, 128, 129, 200):
                a, b = sha256_stream(native=native), sha256_stream(native=native)
                want_a, want_b = hashlib.sha256(DATA[:carried_a]), hashlib.sha256(DATA[:carried_b])
                a.update(DATA[:carried_a])
                b.update(DATA[:carried_b])
                piece = DATA[500 : 500 + length]
                update_both(a, b, piece)
                want_a.update(piece)
                want_b.update(piece)
                where = (carried_a, carried_b, length)
                assert (a.hexdigest(), b.hexdigest()) == (want_a.hexdigest(), want_b.hexdigest()), where


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=700), st.sampled_from(["a", "b", "both"])), max_size=12), st.booleans())
def test_any_mix_of_single_and_shared_updates_hashes_as_hashlib(steps: list[tuple[bytes, str]], native: bool) -> None:
    native = native and bool(_sha256.lanes)
    a, b = sha256_stream(native=native), sha256_stream(native=native)
    want_a, want_b = hashlib.sha256(), hashlib.sha256()
    for data, which in steps:
        if which == "both":
            update_both(a, b, data)
        elif which == "a":
            a.update(data)
        else:
            b.update(data)
        if which in ("a", "both"):
            want_a.update(data)
        if which in ("b", "both"):
            want_b.update(data)
    assert (a.digest(), b.digest()) == (want_a.digest(), want_b.digest())


@pytest.mark.parametrize("native", STREAMS)
def test_large_views_fed_to_two_streams_hash_as_hashlib(native: bool) -> None:
    """What a pull feeds: a chunk's pieces (a few-KiB head, megabytes of middle, a tail) to its file's stream and
    its own, the file's stream carrying whatever the chunks before left."""
    owner = bytearray(os.urandom(8 << 20))
    file, want_file = sha256_stream(native=native), hashlib.sha256()
    file.update(owner[:1001])
    want_file.update(owner[:1001])
    for head, middle, tail in ((0, 8 << 20, 0), (3000, (8 << 20) - 8192, 77), (4095, 1 << 20, 4095)):
        chunk, want_chunk = sha256_stream(native=native), hashlib.sha256()
        at = 0
        for length in (head, middle, tail):
            view = memoryview(owner)[at : at + length]
            update_both(file, chunk, view)
            want_file.update(view)
            want_chunk.update(view)
            view.release()
            at += length
        assert chunk.digest() == want_chunk.digest()
    assert file.hexdigest() == want_file.hexdigest()


@pytest.mark.skipif(not _sha256.lanes, reason="this CPU has no SHA extensions")
def test_the_native_pair_update_refuses_one_stream_twice_and_foreign_streams() -> None:
    stream = _sha256.Sha256Stream()
    with pytest.raises(ValueError):
        _sha256.update_two(stream, stream, b"x")
    with pytest.raises(TypeError):
        _sha256.update_two(stream, hashlib.sha256(), b"x")
    update_both(stream, stream, b"x")  # the wrapper falls back to one update after the other: "x" twice
    assert stream.hexdigest() == hashlib.sha256(b"xx").hexdigest()
