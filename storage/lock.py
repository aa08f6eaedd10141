"""A store-wide reader/writer lock on a lock file: pushes share it, gc takes it exclusively.

gc must never delete an object that a running push has just written or deduplicated against but not yet
catalogued; holding the shared lock for the whole push and the exclusive lock for the whole gc rules that out
for every process on this machine.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelarc.errors import LockedError


@contextmanager
def store_lock(root: Path, *, exclusive: bool, wait: bool = True, name: str = "lock") -> Iterator[None]:
    """The local backend's lock (``LocalBackend.lock``); callers above storage/ use ``ObjectStore.lock``."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        flags = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, flags if wait else flags | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                "the store is busy: another modelarc process holds its lock (a push, pull or gc); try again later"
            ) from None
        yield
    finally:
        os.close(fd)
