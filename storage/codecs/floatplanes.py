"""Codec 2: float-aware. Splits BF16/FP16/FP32 elements into an exponent plane and sign+mantissa byte planes.

Trained weights have exponents clustered in a few values (low entropy) and near-random mantissas. Coding the
exponent bytes on their own with an entropy coder, and leaving a plane raw when it does not compress, is what gets
close to the entropy bound (BASELINES.md). FP32 weights upcast from BF16 have all-zero low mantissa bytes, which a
per-plane coder removes almost entirely.

Parameters (all integers little-endian):
    u8  params version (1)
    u8  element type: 1 = BF16, 2 = F16, 3 = F32
    u8  number of planes N
    N x (u8 plane coder, u64 coded length)
Payload: the N coded planes back to back. Plane coders: 0 raw, 1 zstd frame, 2 raw deflate (RFC 1951) stream.
Planes, for element count n and little-endian element bits u:
    BF16: [exponent (u >> 7) & 0xFF] [sign << 7 | mantissa (u >> 8) & 0x80 | u & 0x7F]
    F16:  [exponent (u >> 10) & 0x1F] [(u >> 8) & 0x83] [u & 0xFF]
    F32:  [exponent (u >> 23) & 0xFF] [(u >> 24) & 0x80 | (u >> 16) & 0x7F] [(u >> 8) & 0xFF] [u & 0xFF]
followed by a final raw plane holding the len(data) % element_size trailing bytes (usually empty).
"""

from __future__ import annotations

import struct
import zlib
from typing import ClassVar

import numpy as np
import zstandard

from modelarc.errors import ObjectFormatError
from modelarc.storage.codecs.base import Encoded

FLOAT_DTYPES = {"BF16": 1, "F16": 2, "F32": 3}
_WIDTH = {1: 2, 2: 2, 3: 4}
PLANE_RAW, PLANE_ZSTD, PLANE_DEFLATE = 0, 1, 2
_PLANE_ENTRY = struct.Struct("<BQ")


def _split(arr: np.ndarray, kind: int) -> list[np.ndarray]:
    if kind == 1:
        u = arr.view("<u2")
        return [((u >> 7) & 0xFF).astype(np.uint8), (((u >> 8) & 0x80) | (u & 0x7F)).astype(np.uint8)]
    if kind == 2:
        u = arr.view("<u2")
        return [((u >> 10) & 0x1F).astype(np.uint8), ((u >> 8) & 0x83).astype(np.uint8), (u & 0xFF).astype(np.uint8)]
    u = arr.view("<u4")
    return [
        ((u >> 23) & 0xFF).astype(np.uint8),
        (((u >> 24) & 0x80) | ((u >> 16) & 0x7F)).astype(np.uint8),
        ((u >> 8) & 0xFF).astype(np.uint8),
        (u & 0xFF).astype(np.uint8),
    ]


def _join(planes: list[np.ndarray], kind: int) -> bytes:
    if kind == 1:
        e, sm = (p.astype(np.uint16) for p in planes)
        return (((sm & 0x80) << 8) | (e << 7) | (sm & 0x7F)).astype("<u2").tobytes()
    if kind == 2:
        e, hi, lo = (p.astype(np.uint16) for p in planes)
        return ((hi << 8) | (e << 10) | lo).astype("<u2").tobytes()
    e, b2, b1, b0 = (p.astype(np.uint32) for p in planes)
    return (((b2 & 0x80) << 24) | (e << 23) | ((b2 & 0x7F) << 16) | (b1 << 8) | b0).astype("<u4").tobytes()


def _code_plane(plane: bytes, exponent: bool) -> tuple[int, bytes]:
    """Pick the smallest of raw, zstd and (for exponent planes) Huffman-only deflate."""
    best: tuple[int, bytes] = (PLANE_RAW, plane)
    if exponent:
        comp = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_HUFFMAN_ONLY)
        coded = comp.compress(plane) + comp.flush()
        if len(coded) < len(best[1]):
            best = (PLANE_DEFLATE, coded)
    coded = zstandard.ZstdCompressor(level=1).compress(plane)
    if len(coded) < len(best[1]) * 0.98:
        best = (PLANE_ZSTD, coded)
    return best


def _decode_plane(coder: int, coded: memoryview, length: int) -> bytes:
    try:
        if coder == PLANE_RAW:
            out = bytes(coded)
        elif coder == PLANE_ZSTD:
            out = zstandard.ZstdDecompressor().decompress(coded, max_output_size=length)
        elif coder == PLANE_DEFLATE:
            d = zlib.decompressobj(-15)
            out = d.decompress(coded, length)
        else:
            raise ObjectFormatError(f"float-planes: unknown plane coder {coder}")
    except (zlib.error, zstandard.ZstdError) as exc:
        raise ObjectFormatError(f"float-planes: plane does not decode: {exc}") from None
    if len(out) != length:
        raise ObjectFormatError(f"float-planes: plane decodes to {len(out)} bytes, expected {length}")
    return out


class FloatPlanesCodec:
    codec_id: ClassVar[int] = 2
    name: ClassVar[str] = "floatplanes"

    def encode(self, data: memoryview, dtype_hint: str | None) -> Encoded:
        kind = FLOAT_DTYPES[dtype_hint or "F32"]
        width = _WIDTH[kind]
        n = len(data) // width
        arr = np.frombuffer(data, dtype=np.uint8, count=n * width)
        planes = _split(arr, kind)
        tail = bytes(data[n * width :])
        entries = []
        chunks = []
        for i, plane in enumerate(planes):
            coder, coded = _code_plane(plane.tobytes(), exponent=(i == 0))
            entries.append(_PLANE_ENTRY.pack(coder, len(coded)))
            chunks.append(coded)
        entries.append(_PLANE_ENTRY.pack(PLANE_RAW, len(tail)))
        chunks.append(tail)
        params = struct.pack("<BBB", 1, kind, len(entries)) + b"".join(entries)
        return Encoded(self.codec_id, params, b"".join(chunks))

    def decode(self, params: bytes, payload: memoryview, raw_length: int) -> bytes:
        if len(params) < 3:
            raise ObjectFormatError("float-planes: truncated parameters")
        version, kind, count = struct.unpack_from("<BBB", params, 0)
        if version != 1 or kind not in _WIDTH:
            raise ObjectFormatError(f"float-planes: unsupported parameters (version {version}, type {kind})")
        width = _WIDTH[kind]
        nplanes = {1: 2, 2: 3, 3: 4}[kind]
        if count != nplanes + 1 or len(params) != 3 + count * _PLANE_ENTRY.size:
            raise ObjectFormatError("float-planes: wrong plane count in parameters")
        n, tail_len = divmod(raw_length, width)
        pos = 0
        planes: list[np.ndarray] = []
        tail = b""
        for i in range(count):
            coder, clen = _PLANE_ENTRY.unpack_from(params, 3 + i * _PLANE_ENTRY.size)
            if pos + clen > len(payload):
                raise ObjectFormatError("float-planes: payload shorter than its plane table")
            expected = n if i < nplanes else tail_len
            if i < nplanes:
                planes.append(np.frombuffer(_decode_plane(coder, payload[pos : pos + clen], expected), np.uint8))
            else:
                tail = _decode_plane(coder, payload[pos : pos + clen], expected)
            pos += clen
        if pos != len(payload):
            raise ObjectFormatError("float-planes: trailing bytes after the last plane")
        return _join(planes, kind) + tail
