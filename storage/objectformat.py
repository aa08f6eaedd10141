"""The self-describing header in front of every stored object (docs/FORMAT.md, "Object files").

    offset  size  field
    0       4     magic b"MAOB"
    4       1     format version (1)
    5       1     codec id (0 raw, 1 zstd, 2 float planes)
    6       2     length P of the codec parameters, little-endian
    8       8     raw (decoded) length in bytes, little-endian
    16      P     codec parameters
    16+P    ...   payload, to the end of the file

Changing this layout means a new format version and keeping a reader for version 1.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from modelarc.errors import ObjectFormatError

MAGIC = b"MAOB"
FORMAT_VERSION = 1
_FIXED = struct.Struct("<4sBBHQ")
HEADER_FIXED_SIZE = _FIXED.size  # 16


@dataclass(frozen=True)
class ObjectHeader:
    codec_id: int
    raw_length: int
    params: bytes

    @property
    def size(self) -> int:
        return HEADER_FIXED_SIZE + len(self.params)

    def pack(self) -> bytes:
        return (
            _FIXED.pack(MAGIC, FORMAT_VERSION, self.codec_id, len(self.params), self.raw_length) + self.params
        )


def unpack_fixed_header(blob: bytes | bytearray | memoryview, name: str = "object") -> tuple[int, int, int]:
    """(codec id, parameter length, raw length) from the first 16 bytes: enough to bound a body before reading it."""
    if len(blob) < HEADER_FIXED_SIZE:
        raise ObjectFormatError(f"{name}: truncated object header ({len(blob)} bytes)")
    magic, version, codec_id, plen, raw_length = _FIXED.unpack_from(blob, 0)
    if magic != MAGIC:
        raise ObjectFormatError(f"{name}: not a modelarc object (bad magic {bytes(magic)[:8]!r})")
    if version != FORMAT_VERSION:
        raise ObjectFormatError(f"{name}: unsupported object format version {version}")
    return codec_id, plen, raw_length


def unpack_header(blob: bytes | bytearray | memoryview, name: str = "object") -> ObjectHeader:
    """Parse the header at the start of ``blob``; every malformed case raises ``ObjectFormatError`` naming ``name``."""
    codec_id, plen, raw_length = unpack_fixed_header(blob, name)
    if len(blob) < HEADER_FIXED_SIZE + plen:
        raise ObjectFormatError(f"{name}: truncated codec parameters")
    params = bytes(blob[HEADER_FIXED_SIZE : HEADER_FIXED_SIZE + plen])
    return ObjectHeader(codec_id=codec_id, raw_length=raw_length, params=params)
