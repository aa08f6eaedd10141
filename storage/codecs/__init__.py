"""Codecs turn raw bytes into a stored payload and back. Each has a fixed numeric id written in object headers.

Ids are forever: a codec may be added, never renumbered. ``choose_and_encode`` picks the codec for a payload
from an element-type hint (``"BF16"``, ``"F16"``, ``"F32"`` or ``None``) and keeps whichever result is smallest,
falling back to raw, so a stored object is never larger than its raw bytes plus the header.
"""

from __future__ import annotations

from modelarc.errors import UnsupportedObjectError
from modelarc.storage.codecs.base import Codec, EncodeBuffers, Encoded
from modelarc.storage.codecs.delta import DeltaCodec
from modelarc.storage.codecs.floatplanes import FLOAT_DTYPES, FloatPlanesCodec
from modelarc.storage.codecs.raw import RawCodec
from modelarc.storage.codecs.zstd import ZstdCodec

# The delta codec (3) decodes only against its base, which the store supplies (ObjectStore.decode_stored).
CODECS: dict[int, Codec] = {
    c.codec_id: c for c in (RawCodec(), ZstdCodec(), FloatPlanesCodec(), DeltaCodec())
}
CODEC_NAMES: dict[int, str] = {cid: c.name for cid, c in CODECS.items()}


def codec_by_id(codec_id: int, name: str = "object") -> Codec:
    """``UnsupportedObjectError`` for an id this modelarc does not know: ids are only ever added, so such an
    object was written by a newer modelarc (docs/FORMAT.md "Versions"), not damaged."""
    try:
        return CODECS[codec_id]
    except KeyError:
        raise unknown_codec(codec_id, name) from None


def unknown_codec(codec_id: int, name: str = "object") -> UnsupportedObjectError:
    known = f"0 to {max(CODECS)}"
    return UnsupportedObjectError(f"{name}: codec id {codec_id} needs a newer modelarc (this one knows {known})")


def choose_and_encode(
    data: bytes | bytearray | memoryview, dtype_hint: str | None = None, buffers: EncodeBuffers | None = None
) -> Encoded:
    """The smallest encoding of ``data``; with ``buffers``, a float-planes payload lives in them (valid until
    their next use, see ``EncodeBuffers``)."""
    view = memoryview(data).cast("B")
    if dtype_hint in FLOAT_DTYPES and len(view) >= 64:
        candidate = FloatPlanesCodec().encode(view, dtype_hint, buffers)
    elif len(view) >= 64:
        candidate = CODECS[ZstdCodec.codec_id].encode(view, dtype_hint)
    else:
        candidate = None
    if candidate is None or len(candidate.payload) + len(candidate.params) >= len(view):
        return CODECS[RawCodec.codec_id].encode(view, dtype_hint)
    return candidate


__all__ = ["CODECS", "CODEC_NAMES", "Codec", "EncodeBuffers", "Encoded", "choose_and_encode", "codec_by_id", "unknown_codec"]
