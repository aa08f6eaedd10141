"""Codec 0: the payload is the raw bytes."""

from __future__ import annotations

from typing import ClassVar

from modelarc.errors import ObjectFormatError
from modelarc.storage.codecs.base import Encoded


class RawCodec:
    codec_id: ClassVar[int] = 0
    name: ClassVar[str] = "raw"

    def encode(self, data: memoryview, dtype_hint: str | None) -> Encoded:
        return Encoded(self.codec_id, b"", data)

    def decode(self, params: bytes, payload: memoryview, raw_length: int) -> bytes:
        if len(payload) != raw_length:
            raise ObjectFormatError(f"raw payload is {len(payload)} bytes, header says {raw_length}")
        return bytes(payload)

    def decode_into(self, params: bytes, payload: memoryview, raw_length: int, out: memoryview) -> None:
        """``decode`` into ``out`` (exactly ``raw_length`` bytes): one copy, into pages the caller reuses."""
        if len(payload) != raw_length:
            raise ObjectFormatError(f"raw payload is {len(payload)} bytes, header says {raw_length}")
        out[:] = payload
