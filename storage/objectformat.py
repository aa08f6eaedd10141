"""The self-describing header in front of every stored object (docs/FORMAT.md, "Object files").

    offset  size  field
    0       4     magic b"MAOB"
    4       1     format version (1)
    5       1     codec id (0 raw, 1 zstd, 2 float planes, 3 delta)
    6       2     length P of the codec parameters, little-endian
    8       8     raw (decoded) length in bytes, little-endian
    16      P     codec parameters
    16+P    ...   payload, to the end of the file

Changing this layout means a new format version and keeping a reader for version 1.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from modelarc.errors import ObjectFormatError, UnsupportedObjectError

MAGIC = b"MAOB"
FORMAT_VERSION = 1
_FIXED = struct.Struct("<4sBBHQ")
HEADER_FIXED_SIZE = _FIXED.size  # 16

# The limits every reader of an object applies (docs/SECURITY.md "Limits"): the decoded length a header may declare
# (ingest writes 8 MiB chunks; manifests of huge models stay far below it), and how much more than that a stored
# object may take (no codec expands data by more). A store reads no more than MAX_STORED_SIZE bytes of any object,
# and decodes none whose header breaks either limit, so a damaged or hostile file costs bounded memory.
MAX_RAW_LENGTH = 256 << 20
MAX_CODEC_OVERHEAD = 1 << 20
MAX_HEADER_SIZE = HEADER_FIXED_SIZE + 0xFFFF  # the parameter length is 16 bits
MAX_STORED_SIZE = MAX_HEADER_SIZE + MAX_RAW_LENGTH + MAX_CODEC_OVERHEAD


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
    if version > FORMAT_VERSION:  # a later format, not damage: the object is left as it is (FORMAT.md "Versions")
        raise UnsupportedObjectError(
            f"{name}: object format version {version} needs a newer modelarc (this one reads version {FORMAT_VERSION})"
        )
    if version != FORMAT_VERSION:  # 0 was never written
        raise ObjectFormatError(f"{name}: object format version {version} was never written")
    return codec_id, plen, raw_length


def check_sizes(header: ObjectHeader, stored_size: int, name: str = "object") -> None:
    """Refuse an object whose header declares more than ``MAX_RAW_LENGTH`` decoded bytes, or whose stored size is
    more than its header, its declared length and ``MAX_CODEC_OVERHEAD``: before decoding, so a small file cannot
    make a reader allocate gigabytes, nor a large one pass for a small object."""
    if header.raw_length > MAX_RAW_LENGTH:
        raise ObjectFormatError(
            f"{name}: its header declares {header.raw_length} decoded bytes; the limit is {MAX_RAW_LENGTH}"
        )
    if stored_size > header.size + header.raw_length + MAX_CODEC_OVERHEAD:
        raise ObjectFormatError(
            f"{name}: {stored_size} bytes stored for {header.raw_length} declared; at most "
            f"{MAX_CODEC_OVERHEAD} more than the header and declared length is allowed"
        )


def unpack_header(blob: bytes | bytearray | memoryview, name: str = "object") -> ObjectHeader:
    """Parse the header at the start of ``blob``; every malformed case raises ``ObjectFormatError`` naming ``name``."""
    codec_id, plen, raw_length = unpack_fixed_header(blob, name)
    if len(blob) < HEADER_FIXED_SIZE + plen:
        raise ObjectFormatError(f"{name}: truncated codec parameters")
    params = bytes(blob[HEADER_FIXED_SIZE : HEADER_FIXED_SIZE + plen])
    return ObjectHeader(codec_id=codec_id, raw_length=raw_length, params=params)
