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
        """Never more than ``raw_length`` (+1) bytes of output, whatever the frame says: python-zstandard ignores
        ``max_output_size`` when the frame states its own content size, so a small hostile object whose frame
        states gigabytes would be inflated whole before any length check. A frame that states a size must state
        the header's; one that states none (another writer's) is read through a bounded stream."""
        try:
            declared = zstandard.frame_content_size(payload)
            if declared >= 0 and declared != raw_length:
                raise ObjectFormatError(f"zstd frame declares {declared} bytes, header says {raw_length}")
            if declared == raw_length:
                out = zstandard.ZstdDecompressor().decompress(
                    payload, max_output_size=raw_length, allow_extra_data=False
                )
            else:
                with zstandard.ZstdDecompressor().stream_reader(payload, read_across_frames=False) as reader:
                    out = reader.read(raw_length + 1)
        except zstandard.ZstdError as exc:
            raise ObjectFormatError(f"zstd payload does not decode: {exc}") from None
        if len(out) != raw_length:
            raise ObjectFormatError(f"zstd payload decodes to {len(out)} bytes, header says {raw_length}")
        return out
