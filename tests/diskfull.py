"""A disk that fills up, in-process: writes under one folder fail with ENOSPC once a byte budget is spent.

Mounting a small tmpfs needs root, which CI may not have, and a test must not be skipped for want of it; so this
patches ``os.write`` and ``os.pwrite`` (the store writes with the one, restore's pool with the other) and decides by the path behind the file
descriptor (``/proc/self/fd``, Linux) whether the write lands on the "full" disk. Like a real file system, the
write that crosses the budget is short and the next one fails with ENOSPC.

    with FullDisk(home / "store", capacity=3 << 20) as disk:
        ...  # run the command; disk.refused counts the refused writes
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any


class FullDisk:
    def __init__(self, folder: Path, capacity: int) -> None:
        self.folder = str(folder.resolve()) + os.sep
        self.capacity = capacity
        self.used = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._real_write = os.write
        self._real_pwrite = os.pwrite

    def __enter__(self) -> FullDisk:
        os.write = self._write
        os.pwrite = self._pwrite
        return self

    def __exit__(self, *exc: Any) -> None:
        os.write = self._real_write
        os.pwrite = self._real_pwrite

    def _write(self, fd: int, data: Any) -> int:
        return self._budgeted(fd, data, lambda view: self._real_write(fd, view))

    def _pwrite(self, fd: int, data: Any, offset: int) -> int:
        return self._budgeted(fd, data, lambda view: self._real_pwrite(fd, view, offset))

    def _budgeted(self, fd: int, data: Any, write: Any) -> int:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            path = ""
        if not path.startswith(self.folder):
            return int(write(data))
        with self._lock:
            room = self.capacity - self.used
            if room <= 0:
                self.refused += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written = int(write(memoryview(data)[:room]))
            self.used += written
            return written
