"""The one interface every storage backend implements: a local folder (``local.py``) or an S3-compatible bucket
(``s3.py``); ``location.py`` picks one from a path or an ``s3://`` URL.

Keys are slash-separated relative names such as ``objects/ab/abcdef...``. A backend stores opaque bytes; it knows
nothing of object headers or codecs. ``put`` must be atomic and durable: after it returns, the whole value is there
or, after a crash before it returned, nothing under that key is.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Protocol, runtime_checkable

from modelarc.errors import UsageError


def key_parts(key: str) -> list[str]:
    """The segments of a valid key; ``UsageError`` for an empty key, an absolute one or one with ``.``/``..``.

    Every backend checks keys the same way, so a key that one backend refuses cannot slip into a store that is
    later copied to another (a ``..`` would leave the folder on disk; on S3 it would just be a strange name).
    """
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") for p in parts):
        raise UsageError(f"invalid storage key {key!r}")
    return parts


@runtime_checkable
class Backend(Protocol):
    # how many requests at once this backend needs to reach its throughput: 1 for a local disk (the CPU is the
    # limit), more for a remote service whose latency, not bandwidth, bounds each request
    concurrency: int

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` under ``key`` atomically and durably; an existing key is left as it is."""

    def open(self, key: str) -> BinaryIO:
        """A streaming reader; raises ``FileNotFoundError`` for a missing key, ``StoredValueError`` for something
        there that is not a value (on a local disk: anything but a regular file)."""

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        """The whole value; raises ``FileNotFoundError`` for a missing key, ``StoredValueError`` for something there
        that is not a value or, with ``max_bytes``, one longer than that, in both cases before its bytes are read.
        Readers of stored objects and records always pass a bound: what is under a key may be damaged."""

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer at the end, none past it), without reading the rest:
        headers of large objects cost one ranged GET on S3. Raises ``FileNotFoundError`` for a missing key,
        ``StoredValueError`` as ``open`` does."""

    def has(self, key: str) -> bool: ...

    def size(self, key: str) -> int:
        """Bytes stored under ``key``; raises ``FileNotFoundError`` for a missing key."""

    def mtime(self, key: str) -> float:
        """When ``key`` was written, as a POSIX timestamp; raises ``FileNotFoundError`` for a missing key."""

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
