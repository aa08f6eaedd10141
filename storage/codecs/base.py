"""The codec interface shared by every codec module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

# Room an encoder leaves in front of a payload it writes into ``EncodeBuffers.out``: the object header (16 bytes
# and the codec parameters, at most 48 bytes for every codec so far) goes there, so header and payload are one
# buffer without a copy.
HEADER_ROOM = 64


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


class EncodeBuffers:
    """Memory an encoder reuses from one chunk to the next (one set per thread).

    Why: an 8 MiB chunk split into fresh planes and coded into a fresh payload, then joined to its header, maps
    thousands of new pages per chunk; on a push that page-fault work cost about as much CPU as the split itself.
    A payload encoded with these buffers lives in ``out``, after ``HEADER_ROOM`` bytes kept free for the header,
    and is valid only until the next encode with them: only a caller that writes it out before it encodes again
    (``ObjectStore.put``) may pass them.
    """

    def __init__(self) -> None:
        self._planes = bytearray()
        self._out = bytearray()
        self._payload: memoryview | None = None  # the last payload handed out by ``payload_view``

    def planes_view(self, size: int) -> memoryview:
        """``size`` bytes of plane memory (replaced when too small, never resized: an older view may live on)."""
        if len(self._planes) < size:
            self._planes = bytearray(size)
        return memoryview(self._planes)[:size]

    def payload_view(self, size: int) -> memoryview:
        """``size`` bytes of output memory for a payload, with ``HEADER_ROOM`` free bytes in front of them."""
        if len(self._out) < HEADER_ROOM + size:
            self._out = bytearray(HEADER_ROOM + size)
        self._payload = memoryview(self._out)[HEADER_ROOM : HEADER_ROOM + size]
        return self._payload

    def framed(self, header: bytes, encoded: Encoded) -> bytes | bytearray | memoryview:
        """``header`` followed by ``encoded``'s payload, as one buffer: the header is written in place in front
        of the payload when the payload is the last one from ``payload_view``, else the two are joined."""
        payload = encoded.payload
        if payload is self._payload and len(header) <= HEADER_ROOM:
            start = HEADER_ROOM - len(header)
            framed = memoryview(self._out)[start : HEADER_ROOM + len(payload)]
            framed[: len(header)] = header
            return framed
        return b"".join((header, payload))
