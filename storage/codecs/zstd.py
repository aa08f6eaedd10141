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
        the header's; one that states none (another writer's) is read through a bounded stream. Before any
        decoding the frame's blocks are walked to check it ends exactly at the payload's end: neither the stream
        nor ``allow_extra_data`` looks past a frame without a size (nor one declaring 0 bytes)."""
        try:
            declared = zstandard.frame_content_size(payload)
            if declared >= 0 and declared != raw_length:
                raise ObjectFormatError(f"zstd frame declares {declared} bytes, header says {raw_length}")
            frame_length = _frame_length(payload)
            if frame_length != len(payload):
                raise ObjectFormatError(f"zstd payload has {len(payload) - frame_length} bytes after its frame")
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


def _frame_length(payload: memoryview) -> int:
    """The stored length of the zstd frame at the start of ``payload`` (RFC 8878 3.1.1), from its block headers
    alone: what libzstd's ZSTD_findFrameCompressedSize does, which python-zstandard does not expose. The walk is in C
    (``_planes.zstd_blocks_end``): a hostile frame of empty raw blocks has one header every 3 bytes, 85 million in a
    256 MiB object, and a Python loop took 0.3 s per MiB of them before anything was decoded."""
    from modelarc.storage.codecs import _planes  # type: ignore[attr-defined]

    start = zstandard.frame_header_size(payload)  # magic included; raises ZstdError on a bad magic or header
    has_checksum = bool(payload[4] & 0x04)  # Frame_Header_Descriptor, Content_Checksum_flag
    end = int(_planes.zstd_blocks_end(payload, start, has_checksum))
    if end < 0:
        raise ObjectFormatError(_TRUNCATED.get(end, "zstd frame has a block of the reserved type"))
    return end


_TRUNCATED = {
    -1: "zstd frame is truncated (a block header runs past the payload)",
    -3: "zstd frame is truncated (a block runs past the payload)",
    -4: "zstd frame is truncated (its checksum runs past the payload)",
}
