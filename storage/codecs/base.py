"""The codec interface shared by every codec module."""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import ClassVar, Protocol

from modelarc.storage.objectformat import HEADER_FIXED_SIZE
from modelarc.storage.pages import aligned_buffer

# Room an encoder leaves in front of a payload it writes into ``EncodeBuffers.out`` when it does not announce its
# parameters' length: the object header (16 bytes and the codec parameters, up to 81 bytes for a delta,
# docs/FORMAT.md; float planes' are at most 48) goes there, so header and payload are one buffer without a copy. A
# header longer than the room is not cut: ``framed`` copies the payload behind it instead.
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
    A payload encoded with these buffers lives in ``out`` behind room kept free for its object header, and is valid
    only until the next encode with them: only a caller that writes it out before it encodes again
    (``ObjectStore.put``) may pass them.

    ``out`` is page-aligned memory, and an encoder that says how long its codec parameters will be gets its payload
    placed so that the header framed in front of it starts ``out``: the object is then one page-aligned buffer,
    which the local backend writes with O_DIRECT as it is (``storage/local.py``), with no copy to align it.
    """

    def __init__(self) -> None:
        self._planes = bytearray()
        self._out: mmap.mmap | None = None
        self._front = HEADER_ROOM  # where the last payload from ``payload_view`` starts in ``out``
        self._payload: memoryview | None = None  # the last payload handed out by ``payload_view``

    def planes_view(self, size: int) -> memoryview:
        """``size`` bytes of plane memory (replaced when too small, never resized: an older view may live on)."""
        if len(self._planes) < size:
            self._planes = bytearray(size)
        return memoryview(self._planes)[:size]

    def payload_view(self, size: int, params_length: int | None = None) -> memoryview:
        """``size`` bytes of output memory for a payload, behind room for its object header: exactly the header's
        length when the codec parameters will be ``params_length`` bytes, else ``HEADER_ROOM`` bytes."""
        front = HEADER_ROOM if params_length is None else HEADER_FIXED_SIZE + params_length
        self._front = front
        self._payload = self._out_view(front + size)[front:]
        return self._payload

    def framed(self, header: bytes, encoded: Encoded) -> bytes | bytearray | memoryview:
        """``header`` followed by ``encoded``'s payload, as one buffer in ``out``: the header is written in place in
        front of the payload when the payload is the last one from ``payload_view`` (at the start of ``out`` when
        its length was announced), else the payload is copied in behind it."""
        payload = memoryview(encoded.payload).cast("B")
        if encoded.payload is self._payload and len(header) <= self._front:
            start = self._front - len(header)
            framed = self._out_view(self._front + len(payload))[start:]
        else:
            framed = self._out_view(len(header) + len(payload))
            framed[len(header) :] = payload
        framed[: len(header)] = header
        return framed

    def _out_view(self, size: int) -> memoryview:
        """The first ``size`` bytes of ``out`` (replaced when too small, never resized: an older view may live on).

        A replacement is sized to the next power of two: coded payloads differ in length from chunk to chunk, and a
        map sized to each new longest one was replaced again and again, each time with fresh pages to fault in
        (a map's untouched pages cost nothing, so the slack is free)."""
        if self._out is None or len(self._out) < size:
            self._out = aligned_buffer(1 << max(16, (size - 1).bit_length()))
        return memoryview(self._out)[:size]
