"""Codec 3: delta. A chunk stored as its XOR with (or difference from) a *base object* of the same raw length, split
into byte planes.

A fine-tune changes almost every tensor a little, so per-tensor dedup finds nothing, but the XOR of a fine-tuned
tensor with its parent's is mostly zero bits: unchanged values are all-zero, and changed ones differ in the low
mantissa bits, leaving the high byte (sign and exponent) mostly zero. Splitting the XOR into byte planes puts those
zeros together. Measured on a 30-step AdamW fine-tune (lr 5e-5) of all-MiniLM-L6-v2 (``bench/delta_codec.py
--transforms``), as a fraction of the fine-tune stored on its own with codec 2: XOR + byte planes 0.30x in BF16 and
0.66x in F32; XOR + codec 2's float-planes split 0.31x / 0.66x; the XOR coded whole 0.38x / 0.78x; integer
subtraction + byte planes 0.36x / 0.60x. So both transforms are in the format. A later addition, transform 2 (zigzag
subtraction: the difference as a signed integer, mapped so that small differences of either sign have small codes),
beat both on every float type: with this writer's plane coders, on the genuine fine-tunes at lr 1e-5 / 5e-5 / 2e-4
(``bench/delta_codec.py --cache /tmp/modelarc-bench --dtypes BF16 F16 F32 --transforms``), stored size as a
fraction of raw:
    BF16  XOR 0.129 / 0.203 / 0.295   subtract 0.172 / 0.242 / 0.323   zigzag 0.114 / 0.177 / 0.259
    F16   XOR 0.244 / 0.354 / 0.454   subtract 0.275 / 0.370 / 0.462   zigzag 0.212 / 0.313 / 0.419
    F32   XOR 0.476 / 0.539 / 0.610   subtract 0.448 / 0.496 / 0.571   zigzag 0.408 / 0.478 / 0.555
(plain subtraction of a value that went down fills the high planes with 0xFF; zigzag keeps them zero), at the
same encode speed. (Measured with zstd level 1 on every plane, before ``_ZSTD_PARAMS``; with it, zigzag gives
BF16 0.109 / 0.174 / 0.259 and F32 0.408 / 0.478 / 0.558, ``bench/delta_codec.py --cache /tmp/modelarc-bench``.) So this writer zigzags BF16, F16 and F32 and XORs plain bytes (not measured: no numbers there).
Plain zstd level 3 on the planes did worse than level 1 and than codec 2's plane coders.

Byte layout (params version 1; this text is the specification, copied into docs/FORMAT.md):

Parameters (integers little-endian):
    u8        params version: 1
    u8        element type: 0 = bytes (1-byte elements), 1 = BF16 (2), 2 = F16 (2), 3 = F32 (4)
    u8        transform: 0 = XOR, 1 = subtract, 2 = zigzag subtract
    32 bytes  the base object's id, as the 32 raw bytes of its sha256
    u8        number of planes N = w + 1 (w the element width: the element planes plus one tail plane)
    N x (u8 plane coder, u64 coded length of the plane in the payload)
    Nothing follows: the parameters are exactly 36 + 9 * N bytes.
Payload: the N coded planes back to back, in table order; the coded lengths add up to the payload length.
Plane coders are codec 2's (0 raw, 1 zstd frame declaring its content size, 2 raw deflate), with its rules.

Transform: with raw length L and the base's raw bytes B (exactly L bytes, else the object is malformed), there
are n = L // w elements, element i of a byte string being the little-endian unsigned integer of its bytes
[w*i, w*i + w). x is L bytes: transform 0 (XOR): x = raw XOR B, byte by byte; transform 1 (subtract): element i of
x is (element i of raw - element i of B) mod 2^(8w), and each byte after the last whole element is
(raw byte - B byte) mod 256; transform 2 (zigzag subtract): with W = 8w bits and d = transform 1's element,
element i of x is zz_W(d) = ((d << 1) mod 2^W) XOR (2^W - 1 if d >= 2^(W-1) else 0), which maps the signed
differences 0, -1, 1, -2, 2, ... (d read as a W-bit two's-complement integer) to 0, 1, 2, 3, 4, ...; each byte
after the last whole element is zz_8((raw byte - B byte) mod 256), i.e. zigzagged as a 1-byte element whatever w
is. Plane k (0 <= k < w) holds byte w - 1 - k of each element of x, most significant byte
first: plane k byte i = x[w*i + w - 1 - k]. The tail plane holds the L % w bytes x[w*n:]. A reader rebuilds x from
the planes and returns x XOR B, or for transform 1 (element of x + element of B) mod 2^(8w) per element and
(x byte + B byte) mod 256 for the tail, or for transform 2 the same sums after mapping each element z of x (each
tail byte: W = 8) back to d = (z >> 1) XOR (2^W - 1 if z is odd else 0). zz_W is a bijection on W-bit values.

Chains: the base may itself be a delta object. A non-delta object has depth 0, a delta object 1 + its base's
depth; a depth above MAX_DELTA_DEPTH (4), or a base chain that comes back to an object already in it, makes the
object malformed: writers never produce one and readers refuse it. A reader verifies the base against its id
before applying the delta, and the result against the delta's own id, as for every object.

Which coder a writer picks per plane is not part of the format: this writer uses codec 2's coders (the
Huffman-literal zstd frame for the high-byte plane too, zstd level 1 tuned for speed on large planes
(``_ZSTD_PARAMS``), raw; Huffman-only deflate only on small planes), choosing one per plane from a sample of it
(``_code_delta_plane``).
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass
from typing import ClassVar

import zstandard

from modelarc.errors import ObjectFormatError
from modelarc.storage.codecs import _planes  # type: ignore[attr-defined]
from modelarc.storage.codecs.base import Encoded
from modelarc.storage.codecs.floatplanes import (
    _SAMPLE_MIN,
    _SAMPLE_WIN,
    PLANE_RAW,
    PLANE_ZSTD,
    Plane,
    _check_plane,
    _code_plane,
    _decode_plane,
    _huffman,
    _sample,
)

DELTA_CODEC_ID = 3
PARAMS_VERSION = 1
# Restoring a chunk reads at most MAX_DELTA_DEPTH + 1 objects; families rarely nest deeper than base -> ft -> ft.
MAX_DELTA_DEPTH = 4
ELEMENT_TYPES = {"BF16": 1, "F16": 2, "F32": 3}  # any other hint, or none, is 0: plain bytes
_WIDTH = {0: 1, 1: 2, 2: 2, 3: 4}
TRANSFORM_XOR, TRANSFORM_SUBTRACT, TRANSFORM_ZIGZAG = 0, 1, 2
TRANSFORMS = (TRANSFORM_XOR, TRANSFORM_SUBTRACT, TRANSFORM_ZIGZAG)
# The writer's choice (not part of the format), by measurement (above): zigzag subtraction on every float type.
_WRITER_TRANSFORM = {0: TRANSFORM_XOR, 1: TRANSFORM_ZIGZAG, 2: TRANSFORM_ZIGZAG, 3: TRANSFORM_ZIGZAG}
# zstd for delta planes: level 1's fast strategy with a 256-entry hash table and 7-byte minimum matches. Delta planes
# are noise-like; searching them for matches costs time and finds little. On the MiniLM fine-tunes (lr 1e-5 / 5e-5 /
# 2e-4) against level 1: BF16 deltas 5.0 / 1.8 / 0.3% smaller, F32 0.1 / 0.04 / 0.5% larger; delta encode CPU 8 /
# 12 / 3% less in BF16, 3 / 18 / 13% less in F32. Any zstd decoder reads the frames: nothing in the format changes.
_ZSTD_PARAMS = zstandard.ZstdCompressionParameters.from_level(
    1, strategy=zstandard.STRATEGY_FAST, hash_log=8, min_match=7, write_content_size=True
)
_contexts = threading.local()  # zstd contexts are not thread-safe: one per thread, reused


def _zstd(plane: Plane) -> bytes:
    try:
        compressor: zstandard.ZstdCompressor = _contexts.compressor
    except AttributeError:
        compressor = _contexts.compressor = zstandard.ZstdCompressor(compression_params=_ZSTD_PARAMS)
    return compressor.compress(plane)


# below this a plane is coded every way without an entropy test: it costs nothing, and the test is noisy there
_SMALL_ENTROPY_MIN = 4096
_HEAD = struct.Struct("<BBB32sB")
_PLANE_ENTRY = struct.Struct("<BQ")
_WHO = "delta"


@dataclass(frozen=True)
class DeltaParams:
    kind: int
    transform: int
    base: bytes  # the base object's id, 32 raw bytes
    planes: tuple[tuple[int, int], ...]  # (coder, coded length), element planes then the tail

    @property
    def width(self) -> int:
        return _WIDTH[self.kind]


def parse_params(params: bytes) -> DeltaParams:
    """The parameters of a delta object, checked for shape; raises ``ObjectFormatError``."""
    if len(params) < _HEAD.size:
        raise ObjectFormatError(f"{_WHO}: parameters are {len(params)} bytes, too short")
    version, kind, transform, base, count = _HEAD.unpack_from(params, 0)
    if version != PARAMS_VERSION:
        raise ObjectFormatError(f"{_WHO}: unsupported parameters version {version}")
    if kind not in _WIDTH:
        raise ObjectFormatError(f"{_WHO}: unknown element type {kind}")
    if transform not in TRANSFORMS:
        raise ObjectFormatError(f"{_WHO}: unknown transform {transform}")
    expected = _WIDTH[kind] + 1
    if count != expected or len(params) != _HEAD.size + count * _PLANE_ENTRY.size:
        raise ObjectFormatError(
            f"{_WHO}: {count} planes in {len(params)} bytes of parameters, "
            f"expected {expected} in {_HEAD.size + expected * _PLANE_ENTRY.size}"
        )
    planes = tuple(_PLANE_ENTRY.unpack_from(params, _HEAD.size + i * _PLANE_ENTRY.size) for i in range(count))
    return DeltaParams(kind, transform, bytes(base), planes)


def _code_delta_plane(plane: bytes, high: bool) -> tuple[int, Plane]:
    """Codec 2's zstd coders, and on a large plane only the sample's winner codes the whole plane: XOR planes are
    neither near-random (codec 2's cue to skip) nor reliably zstd's, and coding each plane twice, as codec 2's
    chooser may, halved the delta's encode speed for a 1% smaller result. Deflate is not tried on large planes:
    on the MiniLM fine-tune (30 AdamW steps, lr 5e-5) it made the deltas 0.4% (BF16) and 0.3% (F32) smaller and
    their encoding 1.6x slower (206 -> 333 MB/s BF16, 167 -> 257 MB/s F32, one thread).

    A small plane (below the sampling threshold) is coded every way, as codec 2 does, unless its order-0 entropy
    says no entropy coder can save 1% (the low byte plane of an F32 difference): then only zstd is tried, for
    string matches. On the MiniLM fine-tunes (lr 1e-5 / 5e-5 / 2e-4, F32) that took 7-10% off the delta's encode
    CPU time and left the deltas the same size to 0.004%; BF16 deltas were unchanged in size and time."""
    if len(plane) < _SAMPLE_MIN:
        if len(plane) >= _SMALL_ENTROPY_MIN and _planes.order0_bits(plane) > 8 * _SAMPLE_WIN:
            coded = _zstd(plane)
            return (PLANE_ZSTD, coded) if len(coded) < len(plane) else (PLANE_RAW, plane)
        return _code_plane(plane, exponent=high)
    probe = _sample(plane)
    coders = [_huffman, _zstd] if high else [_zstd]
    sizes = {code: len(code(probe)) for code in coders}
    best = min(coders, key=lambda code: sizes[code])
    if sizes[best] >= _SAMPLE_WIN * len(probe):
        return (PLANE_RAW, plane)
    coded = best(plane)
    if len(coded) >= len(plane):
        return (PLANE_RAW, plane)
    return (PLANE_ZSTD, coded)


class DeltaCodec:
    """Not a self-contained codec: encoding and decoding need the base's raw bytes, which the store supplies."""

    codec_id: ClassVar[int] = DELTA_CODEC_ID
    name: ClassVar[str] = "delta"

    def encode(self, data: memoryview, dtype_hint: str | None) -> Encoded:
        raise TypeError("the delta codec encodes against a base: use encode_against")

    def decode(self, params: bytes, payload: memoryview, raw_length: int) -> bytes | bytearray:
        raise ObjectFormatError(f"{_WHO}: a delta object decodes only against its base")

    def encode_against(
        self,
        data: bytes | bytearray | memoryview,
        base: bytes | bytearray,
        base_id: bytes,
        dtype_hint: str | None,
        transform: int | None = None,
    ) -> Encoded:
        """``data`` as a delta against ``base`` (same length), whose id is ``base_id`` (32 raw bytes); the
        transform is the writer's choice for the element type unless given."""
        encoded = self._encode(data, base, base_id, dtype_hint, transform, None)
        assert encoded is not None  # no limit was given
        return encoded

    def encode_smaller_than(
        self,
        limit: int,
        data: bytes | bytearray | memoryview,
        base: bytes | bytearray | memoryview,
        base_id: bytes,
        dtype_hint: str | None,
    ) -> Encoded | None:
        """``encode_against``, or None as soon as the delta's parameters and payload are known to take at least
        ``limit`` bytes: a caller that keeps a delta only when it is smaller (``ObjectStore.put_delta``) stops
        coding planes that cannot change its answer. Planes are coded low byte first, so the large, near-random
        ones settle a losing delta early; a delta returned is byte for byte what ``encode_against`` makes."""
        return self._encode(data, base, base_id, dtype_hint, None, limit)

    def _encode(
        self,
        data: bytes | bytearray | memoryview,
        base: bytes | bytearray | memoryview,
        base_id: bytes,
        dtype_hint: str | None,
        transform: int | None,
        smaller_than: int | None,
    ) -> Encoded | None:
        view = memoryview(data).cast("B")
        if len(view) != len(base):
            raise ValueError(f"a delta needs a base of the same length: {len(view)} and {len(base)} bytes")
        if len(base_id) != 32:
            raise ValueError("the base id must be 32 raw bytes")
        kind = ELEMENT_TYPES.get(dtype_hint or "", 0)
        if transform is None:
            transform = _WRITER_TRANSFORM[kind]
        planes = _planes.xor_split(view, base, _WIDTH[kind], transform)
        width = len(planes) - 1
        size = _HEAD.size + len(planes) * _PLANE_ENTRY.size + len(planes[-1])  # the tail is stored raw
        coded: list[tuple[int, Plane]] = [(0, b"")] * width
        for i in reversed(range(width)):
            coded[i] = _code_delta_plane(planes[i], high=i == 0)
            planes[i] = b""  # the raw plane is no longer needed: let it go before the next is coded
            size += len(coded[i][1])
            if smaller_than is not None and size >= smaller_than:
                return None
        coded.append((0, planes[-1]))  # the tail: at most 3 bytes
        params = bytearray(_HEAD.pack(PARAMS_VERSION, kind, transform, base_id, len(coded)))
        for coder, chunk in coded:
            params += _PLANE_ENTRY.pack(coder, len(chunk))
        payload = b"".join(coded_plane for _, coded_plane in coded)
        return Encoded(self.codec_id, bytes(params), payload)

    def decode_against(
        self, params: DeltaParams, payload: memoryview, raw_length: int, base: bytes | bytearray | memoryview
    ) -> bytearray:
        """The raw bytes; ``base`` must already be verified against ``params.base`` by the caller."""
        payload = memoryview(payload).cast("B")
        if len(base) != raw_length:
            raise ObjectFormatError(f"{_WHO}: the base has {len(base)} bytes, the object {raw_length}")
        width = params.width
        n, tail_len = divmod(raw_length, width)
        if sum(clen for _, clen in params.planes) != len(payload):
            raise ObjectFormatError(
                f"{_WHO}: plane table covers {sum(c for _, c in params.planes)} bytes, payload has {len(payload)}"
            )
        lengths = [n] * width + [tail_len]
        for i, ((coder, clen), length) in enumerate(zip(params.planes, lengths, strict=True)):
            _check_plane(coder, clen, length, i, _WHO)
        planes: list[bytes | memoryview] = []
        pos = 0
        for (coder, clen), length in zip(params.planes, lengths, strict=True):
            planes.append(_decode_plane(coder, payload[pos : pos + clen], length, _WHO))
            pos += clen
        out: bytearray = _planes.xor_joined(planes, base, width, params.transform)
        return out
