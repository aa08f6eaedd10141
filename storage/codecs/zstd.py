"""Codec 1: one zstd frame (level 3 by default; the level is not needed to decode). No parameters."""

from __future__ import annotations

from typing import ClassVar

import zstandard

from modelarc.errors import ObjectFormatError
from modelarc.storage.codecs.base import Encoded

LEVEL = 3


class ZstdCodec:
    codec_id: ClassVar[int] = 1
    name: ClassVar[str] = "zstd"

    def encode(self, data: memoryview, dtype_hint: str | None) -> Encoded:
        # A compressor object is not thread-safe; a fresh one per call is cheap compared to the data.
        return Encoded(self.codec_id, b"", zstandard.ZstdCompressor(level=LEVEL).compress(data))

    def decode(self, params: bytes, payload: memoryview, raw_length: int) -> bytes:
        try:
            out = zstandard.ZstdDecompressor().decompress(payload, max_output_size=raw_length)
        except zstandard.ZstdError as exc:
            raise ObjectFormatError(f"zstd payload does not decode: {exc}") from None
        if len(out) != raw_length:
            raise ObjectFormatError(f"zstd payload decodes to {len(out)} bytes, header says {raw_length}")
        return out
