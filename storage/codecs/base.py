"""The codec interface shared by every codec module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol


@dataclass(frozen=True)
class Encoded:
    codec_id: int
    params: bytes
    payload: bytes | bytearray | memoryview


class Codec(Protocol):
    codec_id: ClassVar[int]
    name: ClassVar[str]

    def encode(self, data: memoryview, dtype_hint: str | None) -> Encoded:
        """Encode ``data``; ``dtype_hint`` is advisory and never needed to decode."""

    def decode(self, params: bytes, payload: memoryview, raw_length: int) -> bytes | bytearray:
        """Return exactly ``raw_length`` bytes or raise ``ObjectFormatError``."""
