"""Object ids: the sha256 of an object's raw (decoded) bytes, as 64 lowercase hex digits."""

from __future__ import annotations

import hashlib
import re

from modelarc.errors import UsageError

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ObjectId(str):
    """A validated sha256 hex digest; a ``str`` so it serialises and compares as text."""

    __slots__ = ()

    def __new__(cls, value: str) -> ObjectId:
        if not isinstance(value, str):  # a JSON number or null from a hostile document: not an AttributeError
            raise UsageError(f"not an object id (64 lowercase hex digits): {str(value)[:80]!r}")
        if value.startswith("sha256:"):
            value = value[len("sha256:") :]
        if not _HEX64.fullmatch(value):  # match() would let a trailing "\n" in
            raise UsageError(f"not an object id (64 lowercase hex digits): {value[:80]!r}")
        return super().__new__(cls, value)

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview) -> ObjectId:
        return super().__new__(cls, hashlib.sha256(data).hexdigest())

    @classmethod
    def from_digest(cls, digest: bytes) -> ObjectId:
        """The id of an object whose raw bytes' SHA-256 digest (32 bytes) is already known."""
        if len(digest) != 32:
            raise ValueError(f"a SHA-256 digest is 32 bytes, not {len(digest)}")
        return super().__new__(cls, digest.hex())

    @property
    def prefixed(self) -> str:
        return f"sha256:{self}"
