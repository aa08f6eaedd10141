"""One file a user names for a command to write (``pull --signature``, ``export -o``), written atomically.

Its checks run before the work that produces it (a pull of gigabytes, an export), not after: the place must be a
regular file or nothing (a symlink, FIFO or device is refused, never renamed over: ``--signature /dev/full`` once
turned the device into a file), its folder must be a folder, and the temp file beside it is created up front, so a
folder the system will not let us write in (permissions, a read-only or pseudo file system) fails before anything
else has happened. The bytes then go to that temp file, are fsynced and renamed over the target.
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from pathlib import Path

from modelarc.errors import DestinationError

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class OutputFile:
    """``path``, checked and with its temp file made; ``write`` once, or ``discard`` when the command fails."""

    def __init__(self, path: Path, *, option: str) -> None:
        self.path = path
        self.option = option  # how the user named it, for messages: "--signature", "-o"
        check_output_place(path, option)
        self.tmp = path.with_name(f".{path.name}.modelarc-partial-{uuid.uuid4().hex[:12]}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fd: int | None = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except OSError as exc:
            raise self._refusal(exc) from None

    def write(self, data: bytes) -> None:
        """The whole file: written to the temp file, fsynced, renamed over the target."""
        assert self._fd is not None, "written twice"
        fd, self._fd = self._fd, None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(self.tmp, self.path)
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            self.tmp.unlink(missing_ok=True)
            if exc.errno in _NO_SPACE:
                raise
            raise self._refusal(exc) from None

    def discard(self) -> None:
        """Remove the temp file (the command failed before ``write``); safe to call more than once."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.tmp.unlink(missing_ok=True)

    def _refusal(self, exc: OSError) -> DestinationError:
        return _refusal(self.option, self.path, exc)


def check_output_place(path: Path, option: str) -> None:
    """Refuse a place no file can be written to (a folder, a symlink, device or pipe; under something that is not a
    folder) in one line: first of a command's checks, before "already exists" would mislead."""
    from modelarc.archive.restore import check_folder

    check_folder(path.parent, path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _refusal(option, path, exc) from None
    if stat.S_ISDIR(mode):
        raise DestinationError(f"{option} {path} is a folder; name the file to write")
    if not stat.S_ISREG(mode):
        raise DestinationError(
            f"{option} {path} exists and is not a regular file (a symlink, device or pipe); "
            "modelarc writes only regular files"
        )


def _refusal(option: str, path: Path, exc: OSError) -> DestinationError:
    return DestinationError(f"cannot write {option} {path}: {exc.strerror}")
