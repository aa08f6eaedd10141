"""Codec 2: float-aware. Splits BF16/FP16/FP32 elements into byte planes, the first holding the exponent.

Trained weights have exponents clustered in a few values (low entropy) and near-random mantissas. Coding the
exponent bytes on their own with an entropy coder, and leaving a plane raw when it does not compress, is what gets
close to the entropy bound (BASELINES.md). FP32 weights upcast from BF16 have all-zero low mantissa bytes, which a
per-plane coder removes almost entirely.

Byte layout (params version 1; this text is the specification, copied into docs/FORMAT.md):

Parameters (all integers little-endian):
    u8  params version: 1
    u8  element type: 1 = BF16 (2-byte elements), 2 = F16 (2-byte), 3 = F32 (4-byte)
    u8  number of planes N: 3 for BF16, 4 for F16, 5 for F32 (the element planes plus one tail plane)
    N x (u8 plane coder, u64 coded length of the plane in the payload)
    Nothing follows: the parameters are exactly 3 + 9 * N bytes.
Payload: the N coded planes back to back, in table order, and nothing else: the coded lengths add up to the
payload length.

Elements: with raw length L (from the object header) and element size w, there are n = L // w elements,
element i being the little-endian unsigned integer u of raw bytes [w*i, w*i + w). Plane k holds one byte per
element, byte i coming from element i:
    BF16: p0 = (u >> 7) & 0xFF                          exponent
          p1 = ((u >> 8) & 0x80) | (u & 0x7F)           sign in bit 7, mantissa in bits 0-6
    F16:  p0 = (u >> 10) & 0x1F                         exponent
          p1 = (u >> 8) & 0x83                          sign in bit 7, mantissa bits 9-8 in bits 1-0
          p2 = u & 0xFF                                 mantissa bits 7-0
    F32:  p0 = (u >> 23) & 0xFF                         exponent
          p1 = ((u >> 24) & 0x80) | ((u >> 16) & 0x7F)  sign in bit 7, mantissa bits 22-16 in bits 0-6
          p2 = (u >> 8) & 0xFF                          mantissa bits 15-8
          p3 = u & 0xFF                                 mantissa bits 7-0
The last plane (the tail) holds the L % w raw bytes after the last whole element (usually none).
A reader rebuilds each element from its plane bytes, ignoring plane bits outside the fields above (a writer
always stores them as zero):
    BF16: u = ((p1 & 0x80) << 8) | (p0 << 7) | (p1 & 0x7F)
    F16:  u = ((p1 & 0x83) << 8) | ((p0 & 0x1F) << 10) | p2
    F32:  u = ((p1 & 0x80) << 24) | (p0 << 23) | ((p1 & 0x7F) << 16) | (p2 << 8) | p3
The raw bytes are the n elements written back little-endian, followed by the tail plane.

Plane coders; a coded plane must decode to exactly its plane length (n bytes, or L % w for the tail):
    0  raw: the plane bytes themselves (coded length = plane length).
    1  zstd: one zstd frame (RFC 8878) whose header declares its content size, equal to the plane length, and
       nothing after it.
    2  deflate: one raw deflate stream (RFC 1951, no zlib or gzip wrapper) whose last block ends within the
       final byte of the coded plane (only the padding bits of that byte may be unused).
Anything else makes the object malformed and a reader must refuse it: another params version, element type,
plane count or coder; parameters of another length; coded lengths that do not add up to the payload; a plane that
decodes to another length or leaves bytes after its frame or stream. (This reader also refuses, before decoding,
a deflate plane claiming more than 1032 times its coded length, deflate's maximum ratio, so that a corrupt length
cannot cause a huge allocation.)

Which coder a writer picks per plane is not part of the format. This writer splits and joins planes in native
code (``_planes.c``) and codes the exponent plane as a zstd frame of Huffman-coded literal blocks with no
sequences, also written by ``_planes.c``: an order-0 entropy coder with no string matching is what exponents want
(BASELINES.md), libzstd cannot be asked for it, but any zstd decoder reads it (coder 1 above, so nothing new to
specify). For every plane it codes a sample of evenly spaced slices with that Huffman frame, with zstd level 1
(string matching: wins on runs and zero planes) and, when the sample holds bytes that the Huffman frame must store
raw, with Huffman-only deflate; it then codes the whole plane with the sample's winner, or stores the plane raw
when no coder saved 1% on the sample (near-random mantissas cost nothing to skip), keeping raw whenever a coded
plane would be larger. Planes below the sampling threshold are coded every way and the smallest kept.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable
from types import ModuleType
from typing import ClassVar

import zstandard

from modelarc.errors import ObjectFormatError
from modelarc.storage.codecs import _planes  # type: ignore[attr-defined]
from modelarc.storage.codecs.base import EncodeBuffers, Encoded

FLOAT_DTYPES = {"BF16": 1, "F16": 2, "F32": 3}
_WIDTH = {1: 2, 2: 2, 3: 4}
_ELEMENT_PLANES = {1: 2, 2: 3, 3: 4}
PARAMS_VERSION = 1
PLANE_RAW, PLANE_ZSTD, PLANE_DEFLATE = 0, 1, 2
_HEAD = struct.Struct("<BBB")
_PLANE_ENTRY = struct.Struct("<BQ")

# Deflate cannot expand more than 1032:1 (a 258-byte match coded in 2 bits); a plane claiming more is malformed,
# which keeps a corrupt length from turning into a huge allocation.
_DEFLATE_MAX_RATIO = 1032

# Encoder tuning. A plane below _SAMPLE_MIN bytes is coded every way; above it, a coder other than the plane's
# first is tried on the whole plane only if it saves 1% on a sample of _SAMPLE_SLICES evenly spaced slices.
_SAMPLE_SLICES = 8
_SAMPLE_SLICE = 16 << 10
_SAMPLE_MIN = 4 * _SAMPLE_SLICES * _SAMPLE_SLICE
_SAMPLE_WIN = 0.99
_ZSTD_LEVEL = 1
_ENTROPY_STEP = 4  # the near-random test reads every 4th 4 KiB block of a plane
_HUFFMAN_MAX_SYMBOL = 128  # bytes above this leave the Huffman frame's blocks raw (see _planes.c)

Plane = bytes | memoryview


def _optional_module(name: str) -> ModuleType | None:
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        return None


# Both produce and accept the same deflate streams as the stdlib zlib: these are speed-ups only.
_zlib_ng = _optional_module("zlib_ng.zlib_ng")
_isal_zlib = _optional_module("isal.isal_zlib")
_DEFLATE_WRITER: ModuleType = _zlib_ng if _zlib_ng is not None else zlib
_INFLATE: ModuleType = _isal_zlib if _isal_zlib is not None else zlib
_INFLATE_ERRORS: tuple[type[BaseException], ...] = (zlib.error, _INFLATE.error)

# zstd contexts are not thread-safe and cost an allocation each: one per thread, reused.
_contexts = threading.local()


def _zstd_compressor() -> zstandard.ZstdCompressor:
    try:
        return _contexts.compressor  # type: ignore[no-any-return]
    except AttributeError:
        _contexts.compressor = zstandard.ZstdCompressor(level=_ZSTD_LEVEL, write_content_size=True)
        return _contexts.compressor  # type: ignore[no-any-return]


def _zstd_decompressor() -> zstandard.ZstdDecompressor:
    try:
        return _contexts.decompressor  # type: ignore[no-any-return]
    except AttributeError:
        _contexts.decompressor = zstandard.ZstdDecompressor()
        return _contexts.decompressor  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------------------
# Plane coders
# ---------------------------------------------------------------------------------------------------------


def _huffman(plane: Plane) -> bytes:
    out: bytes = _planes.huffman_frame(plane)
    return out


def _zstd(plane: Plane) -> bytes:
    return _zstd_compressor().compress(plane)


def _deflate(plane: Plane) -> bytes:
    comp = _DEFLATE_WRITER.compressobj(1, _DEFLATE_WRITER.DEFLATED, -15, 9, _DEFLATE_WRITER.Z_HUFFMAN_ONLY)
    return comp.compress(plane) + comp.flush()  # type: ignore[no-any-return]


def _sample(plane: Plane) -> bytes:
    step = len(plane) // _SAMPLE_SLICES
    return b"".join(plane[i * step : i * step + _SAMPLE_SLICE] for i in range(_SAMPLE_SLICES))


def _has_unnameable(data: Plane) -> bool:
    """Whether ``data`` holds bytes that the Huffman frame stores raw."""
    return bool(_planes.max_byte(data) > _HUFFMAN_MAX_SYMBOL)


def _is_zero(plane: Plane) -> bool:
    """Whether every byte is 0 (the low mantissa planes of FP32 weights upcast from BF16); the first 4 KiB
    answer for nearly every other plane, so the full scan is paid only by planes that are zero."""
    return len(plane) > 0 and _planes.max_byte(plane[:4096]) == 0 and _planes.max_byte(plane) == 0


# The coding of an all-zero plane of each length, made by ``_best_coding`` from the plane itself: zstd, the
# mantissa planes' first coder, is deterministic, so a frame made once per length is the one it would make again
# (the same bytes on disk), without compressing 2 MiB of zeros per chunk. A few lengths cover a model's chunks.
_zero_planes: dict[int, tuple[int, Plane]] = {}
_ZERO_PLANES_KEPT = 64


def _zero_plane(n: int) -> tuple[int, Plane]:
    coded = _zero_planes.get(n)
    if coded is None:
        coded = _best_coding(bytes(n), exponent=False)
        if len(_zero_planes) >= _ZERO_PLANES_KEPT:
            _zero_planes.clear()
        _zero_planes[n] = coded
    return coded


def _code_plane(plane: Plane, exponent: bool) -> tuple[int, Plane]:
    """``_best_coding``, an all-zero mantissa plane's from the per-length cache."""
    if not exponent and _is_zero(plane):
        return _zero_plane(len(plane))
    return _best_coding(plane, exponent)


def _best_coding(plane: Plane, exponent: bool) -> tuple[int, Plane]:
    """Smallest of raw and the coders. The first coder (Huffman frame for exponents, zstd otherwise) codes the
    whole plane; on a large plane the others are tried in full only if a sample says they may win."""
    first: Callable[[Plane], bytes] = _huffman if exponent else _zstd
    others: list[Callable[[Plane], bytes]] = [_zstd] if exponent else []
    probe = plane if len(plane) < _SAMPLE_MIN else _sample(plane)
    if _has_unnameable(probe):
        others.append(_deflate)
    if not exponent and probe is not plane and _planes.order0_bits(plane, _ENTROPY_STEP) > 8 * _SAMPLE_WIN:
        # Near-random bytes (mantissas): no entropy coder saves 1%. Skip the full zstd pass unless string
        # matching, which the entropy does not see, saves 1% on the sample.
        if len(_zstd(probe)) >= _SAMPLE_WIN * len(probe):
            return (PLANE_RAW, plane)
        others = []
    codings = {first: first(plane)}
    if probe is plane:
        codings.update((code, code(plane)) for code in others)
    elif others:
        base = _SAMPLE_WIN * len(first(probe))
        codings.update((code, code(plane)) for code in others if len(code(probe)) < base)
    best: tuple[int, Plane] = (PLANE_RAW, plane)
    for code, coded in codings.items():
        if len(coded) < len(best[1]):
            best = (PLANE_DEFLATE if code is _deflate else PLANE_ZSTD, coded)
    return best


def _inflate(coded: memoryview, length: int) -> bytes:
    d = _INFLATE.decompressobj(-15)
    # One byte of room beyond the plane: a stream that fills it is too long, and one that stops exactly at the
    # plane length still gets to read its end-of-block code.
    out: bytes = d.decompress(coded, length + 1)
    if len(out) > length:
        raise ObjectFormatError(f"float-planes: deflate plane is longer than {length} bytes")
    if not d.eof:
        raise ObjectFormatError("float-planes: deflate plane is truncated")
    if d.unused_data:
        raise ObjectFormatError(f"float-planes: {len(d.unused_data)} bytes after the deflate stream")
    return out


def _decode_plane(
    coder: int, coded: memoryview, length: int, who: str = "float-planes"
) -> bytes | memoryview:
    if coder == PLANE_RAW:
        return coded
    try:
        if coder == PLANE_ZSTD:
            declared = zstandard.frame_content_size(coded)
            if declared != length:
                raise ObjectFormatError(
                    f"{who}: zstd plane declares {declared} bytes, expected {length}"
                    if declared >= 0
                    else f"{who}: zstd plane does not declare its size"
                )
            out: bytes = _zstd_decompressor().decompress(
                coded, max_output_size=length, allow_extra_data=False
            )
        elif coder == PLANE_DEFLATE:
            out = _inflate(coded, length)
        else:
            raise AssertionError(coder)  # checked by the caller
    except (zstandard.ZstdError, *_INFLATE_ERRORS) as exc:  # type: ignore[misc]
        raise ObjectFormatError(f"{who}: plane does not decode: {exc}") from None
    if len(out) != length:
        raise ObjectFormatError(f"{who}: plane decodes to {len(out)} bytes, expected {length}")
    return out


# Coded frames known to decode to an all-zero plane, with that plane's length: the low mantissa planes of FP32
# weights upcast from BF16, the same few tiny frames in every chunk. Such a plane is handed to the join as None
# (zeros it does not read from memory) instead of being decoded, 2 MiB of zeros per chunk, and streamed through.
# A frame is remembered only after it has decoded to zeros here, and the same bytes always decode the same way,
# so a frame is accepted or refused exactly as if it were decoded every time.
_zero_frames: dict[bytes, int] = {}
_ZERO_FRAMES_KEPT = 64
_ZERO_FRAME_MAX = 1024  # coded bytes: a zero plane worth skipping codes to a few bytes per 128 KiB block


def _element_plane(coder: int, coded: memoryview, length: int) -> bytes | memoryview | None:
    """``_decode_plane`` for an element plane, None when it is all zeros (see ``_zero_frames``)."""
    if coder != PLANE_ZSTD or len(coded) > _ZERO_FRAME_MAX or length < 2 * len(coded):
        return _decode_plane(coder, coded, length)
    key = bytes(coded)
    if _zero_frames.get(key) == length:
        return None
    plane = _decode_plane(coder, coded, length)
    if _planes.max_byte(plane) != 0:
        return plane
    if len(_zero_frames) >= _ZERO_FRAMES_KEPT:
        _zero_frames.clear()
    _zero_frames[key] = length
    return None


def _check_plane(coder: int, clen: int, length: int, index: int, who: str = "float-planes") -> None:
    """Reject impossible plane entries before anything is decoded or allocated."""
    if coder == PLANE_RAW:
        if clen != length:
            raise ObjectFormatError(f"{who}: raw plane {index} is {clen} bytes, expected {length}")
    elif coder == PLANE_ZSTD:
        if clen < 6:  # the smallest zstd frame: magic number, frame header, one empty block
            raise ObjectFormatError(f"{who}: zstd plane {index} is too short ({clen} bytes)")
    elif coder == PLANE_DEFLATE:
        if clen == 0 or length > _DEFLATE_MAX_RATIO * clen:
            raise ObjectFormatError(f"{who}: deflate plane {index} of {clen} bytes cannot hold {length}")
    else:
        raise ObjectFormatError(f"{who}: unknown coder {coder} for plane {index}")


class FloatPlanesCodec:
    codec_id: ClassVar[int] = 2
    name: ClassVar[str] = "floatplanes"

    def encode(
        self, data: memoryview, dtype_hint: str | None, buffers: EncodeBuffers | None = None
    ) -> Encoded:
        """Any bytes round-trip under any hint; the hint (F32 when missing or unknown) only steers the split.
        With ``buffers`` the planes and the payload live in them (see ``EncodeBuffers``); the bytes are the same."""
        data = memoryview(data).cast("B")
        kind = FLOAT_DTYPES.get(dtype_hint or "F32", FLOAT_DTYPES["F32"])
        n = len(data) // _WIDTH[kind]
        count = _ELEMENT_PLANES[kind]
        planes: list[Plane]
        if buffers is None:
            planes = _planes.split(data, kind, n)
        else:
            memory = buffers.planes_view(count * n)
            _planes.split(data, kind, n, memory)
            planes = [memory[k * n : (k + 1) * n] for k in range(count)]
        coded = [_code_plane(plane, exponent=i == 0) for i, plane in enumerate(planes)]
        coded.append((PLANE_RAW, data[n * _WIDTH[kind] :]))
        params = bytearray(_HEAD.pack(PARAMS_VERSION, kind, len(coded)))
        for coder, chunk in coded:
            params += _PLANE_ENTRY.pack(coder, len(chunk))
        size = sum(len(c) for _, c in coded)
        owned = bytearray(size) if buffers is None else None
        if owned is not None:
            view = memoryview(owned)
        else:  # the parameters' length places the payload so that its object starts on a page (EncodeBuffers)
            view = buffers.payload_view(size, len(params))  # type: ignore[union-attr]
        pos = 0
        for _coder, chunk in coded:
            view[pos : pos + len(chunk)] = memoryview(chunk)  # type: ignore[arg-type]
            pos += len(chunk)
        if owned is None:
            return Encoded(self.codec_id, bytes(params), view)
        view.release()
        return Encoded(self.codec_id, bytes(params), owned)

    def decode(self, params: bytes, payload: memoryview, raw_length: int) -> bytearray:
        planes, kind, n, tail = _coded_planes(params, payload, raw_length)
        out: bytearray = _planes.joined(planes, kind, n, tail)
        return out

    def decode_into(self, params: bytes, payload: memoryview, raw_length: int, out: memoryview) -> None:
        """``decode`` into ``out`` (exactly ``raw_length`` bytes, not overlapping ``payload``): a reader that
        recycles its buffers (restore) writes every object into pages it has already touched."""
        planes, kind, n, tail = _coded_planes(params, payload, raw_length)
        _planes.joined(planes, kind, n, tail, out)


def _coded_planes(
    params: bytes, payload: memoryview, raw_length: int
) -> tuple[list[bytes | memoryview | None], int, int, bytes | memoryview]:
    """The element planes, decoded (None: all zeros, see ``_zero_frames``), with the element type, element count
    and tail: everything the join needs.
    Every malformed case raises ``ObjectFormatError`` before anything large is allocated."""
    payload = memoryview(payload).cast("B")
    if len(params) < _HEAD.size:
        raise ObjectFormatError(f"float-planes: parameters are {len(params)} bytes, too short")
    version, kind, count = _HEAD.unpack_from(params, 0)
    if version != PARAMS_VERSION:
        raise ObjectFormatError(f"float-planes: unsupported parameters version {version}")
    if kind not in _WIDTH:
        raise ObjectFormatError(f"float-planes: unknown element type {kind}")
    nplanes = _ELEMENT_PLANES[kind]
    if count != nplanes + 1 or len(params) != _HEAD.size + count * _PLANE_ENTRY.size:
        raise ObjectFormatError(
            f"float-planes: {count} planes in {len(params)} bytes of parameters, "
            f"expected {nplanes + 1} in {_HEAD.size + (nplanes + 1) * _PLANE_ENTRY.size}"
        )
    if raw_length < 0:
        raise ObjectFormatError(f"float-planes: negative raw length {raw_length}")
    width = _WIDTH[kind]
    n, tail_len = divmod(raw_length, width)
    entries = [_PLANE_ENTRY.unpack_from(params, _HEAD.size + i * _PLANE_ENTRY.size) for i in range(count)]
    if sum(clen for _, clen in entries) != len(payload):
        raise ObjectFormatError(
            f"float-planes: plane table covers {sum(c for _, c in entries)} bytes, payload has {len(payload)}"
        )
    for i, (coder, clen) in enumerate(entries):
        _check_plane(coder, clen, n if i < nplanes else tail_len, i)
    planes: list[bytes | memoryview | None] = []
    pos = 0
    for coder, clen in entries[:nplanes]:
        planes.append(_element_plane(coder, payload[pos : pos + clen], n))
        pos += clen
    tail = _decode_plane(entries[-1][0], payload[pos:], tail_len)
    return planes, kind, n, tail
