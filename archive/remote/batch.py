"""The frames of ``POST /v1/objects/batch``: several objects, as stored, in one response (docs/FORMAT.md "Transfer").

Why a batch: serving one object per request cost the server 3.5-3.8 ms of CPU per 1.8 MB object (routing,
middleware, two access queries each, then the bytes), 1.8-2.0 ms in batches of 8 (bench/http_pull.py's BF16). The
frames carry nothing the single-object route does not: each object is still judged by its header and decoded and
hashed by the receiver before it is kept, and each is refused or missing on its own.

    stream = MAGIC frame*          (one frame per requested id, in the order asked)
    frame  = id (32 bytes, the sha256) | status (1 byte) | length (8 bytes, big-endian) | payload (length bytes)
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from modelarc.storage import ObjectId

MAGIC = b"MARCOBJ\x01"  # the last byte is the stream's format version
MEDIA_TYPE = "application/vnd.modelarc.objects"
MAX_BATCH_IDS = 64  # a response holds at most this many objects (a few hundred MiB of 8 MiB chunks at most)
# a frame's payload: the object as stored (OBJECT), or a one-line UTF-8 reason (MISSING, REFUSED)
OBJECT, MISSING, REFUSED = 0, 1, 2
MAX_REASON_BYTES = 4096
_FRAME = struct.Struct(">32sBQ")
FRAME_HEADER_SIZE = _FRAME.size  # 41


class FrameHeader(NamedTuple):
    oid: ObjectId
    status: int
    length: int


def pack_frame_header(oid: ObjectId, status: int, length: int) -> bytes:
    return _FRAME.pack(bytes.fromhex(oid), status, length)


def unpack_frame_header(data: bytes) -> FrameHeader:
    """The header of one frame; ``ValueError`` when it is not ``FRAME_HEADER_SIZE`` bytes or names no status."""
    raw_id, status, length = _FRAME.unpack(data)
    if status not in (OBJECT, MISSING, REFUSED):
        raise ValueError(f"unknown frame status {status}")
    return FrameHeader(ObjectId(raw_id.hex()), status, length)
