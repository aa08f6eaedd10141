"""An exclusive, non-blocking lock on a local folder, for as long as one process writes into it.

Not a store lock: those are catalog rows (registry/store_locks.py), so that they bind every machine sharing a
catalog. A restore's destination is a folder on this machine that processes of any archive (each with its own
catalog) may write into, so the lock is an flock on the folder itself: nothing is left in it, and the kernel drops
it when its holder dies.
"""

from __future__ import annotations

import os
from pathlib import Path


class FolderBusy(Exception):
    """Another open file description holds the folder's lock (another process, or another restore in this one)."""


class FolderLock:
    """An exclusive flock on ``folder`` (which must exist), taken at once or not at all: ``FolderBusy`` if another
    holds it, ``OSError`` if the folder cannot be opened. Released by ``release`` (or by leaving a ``with`` block)."""

    def __init__(self, folder: Path) -> None:
        import fcntl  # here, not at the top: POSIX only

        self._fd: int | None = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise FolderBusy(str(folder)) from None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the lock
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
