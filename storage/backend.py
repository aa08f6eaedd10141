"""The one interface every storage backend implements (local folder now, S3-compatible later).

Keys are slash-separated relative names such as ``objects/ab/abcdef...``. A backend stores opaque bytes; it knows
nothing of object headers or codecs. ``put`` must be atomic and durable: after it returns, the whole value is there
or, after a crash before it returned, nothing under that key is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Protocol, runtime_checkable


@runtime_checkable
class Backend(Protocol):
    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` under ``key`` atomically and durably; an existing key is left as it is."""

    def open(self, key: str) -> BinaryIO:
        """A streaming reader; raises ``FileNotFoundError`` for a missing key."""

    def get(self, key: str) -> bytes:
        """The whole value; raises ``FileNotFoundError`` for a missing key."""

    def has(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def iterate(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix``, in no particular order."""

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error (deletes race with other deletes)."""

    def sync(self) -> None:
        """Make every ``put`` so far durable, for backends that defer directory syncs."""

    def clean_tmp(self, older_than: float) -> int:
        """Remove the debris of killed writers older than ``older_than`` (a timestamp); how many were removed."""

    def temp_count(self) -> int:
        """How many leftovers of unfinished writes there are (fsck reports them)."""
