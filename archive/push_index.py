"""The push index: which source files a push has read already, so that re-pushing them need not read them again.

Re-pushing an unchanged folder used to read and hash every byte to find out that nothing changed: 0.5 s per GB
on top of the command's fixed cost, however many hundreds of gigabytes an archive re-pushes after each training run.
git's index and restic's parent snapshot solve this by trusting a file's stat; so does this module. It is the
push-side twin of the load cache (archive/runtime/cache.py), with the same argument for what is trusted.

One file per home, ``<home>/push-index.json``, rewritten atomically after a push is recorded::

    {"format": "modelarc.push-index", "version": 1,
     "files": {"/abs/path/model.safetensors": {"size": N, "mtime_ns": N, "ctime_ns": N, "ino": N, "dev": N,
               "sha256": "<hex of the whole file>", "snapshot": "<64 hex>", "path": "model.safetensors",
               "at": <unix seconds when recorded>}}}

An entry says only: "the file at this absolute path, with exactly this stat, was read in full by a push and found
to be file ``path`` of snapshot ``snapshot``, with this sha256". What a later push trusts, and why:

- The stat. Size, mtime, ctime, inode and device must all be equal. ctime cannot be set from user space, so any
  write to the file, even one that puts its mtime back, changes it; so does replacing the file (new inode).
- Only settled files are recorded: a file whose mtime or ctime is less than ``SETTLE_SECONDS`` before its read began
  (git's "racily clean" case: a write in the same timestamp tick as the read would leave the stat unchanged on a
  file system with coarse timestamps), or whose stat changed while it was read, is not recorded, and is read again
  next time.
- Nothing else from the index. The file's entry (its parts and chunk ids) comes from the manifest of a snapshot the
  catalog records, read from the store and verified against the snapshot id, and must list ``path`` with the same size and sha256; every
  chunk it names must still be in the store (as the dedup of a normal push trusts). Any mismatch, or an index that
  does not parse, is a miss: the file is read as if the index did not exist.

What this does not catch is a change under an unchanged stat (a disk that corrupts the file in place, or a tool that
writes the block device directly): ``push --rehash`` reads every file, as restic's ``--force`` does. A file whose stat
changed, and with ``--rehash`` every file, is not trusted but proven: read, and taken as the entry the index names
only if each of its chunks hashes to that entry's ids (archive/proven_files.py).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

INDEX_FORMAT = "modelarc.push-index"
INDEX_VERSION = 1
INDEX_FILE = "push-index.json"
SETTLE_SECONDS = 2.0  # coarser than the mtime tick of every common file system (FAT's is 2 s)
MAX_ENTRIES = 100_000  # beyond this the oldest entries go: a miss costs a read, never a wrong answer
_STAT_FIELDS = ("size", "mtime_ns", "ctime_ns", "ino", "dev")


@dataclass(frozen=True)
class IndexedFile:
    """What the index remembers of one source file (see the module docstring for what is trusted)."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int
    sha256: str
    snapshot: str  # 64 hex: the snapshot whose manifest lists the file
    path: str  # its path in that snapshot
    at: float

    def matches(self, st: os.stat_result) -> bool:
        return (self.size, self.mtime_ns, self.ctime_ns, self.ino, self.dev) == stat_key(st)


@dataclass(frozen=True)
class FileRead:
    """A source file as a push read it: its stat just before and just after, and when the read began."""

    source: Path  # the path as listed (a symlink to a file is followed by stat, as by the read)
    rel: str
    before: os.stat_result
    after: os.stat_result
    started: float  # time.time() before the first byte was read
    sha256: str

    def settled(self) -> bool:
        """Whether the stat pins the content read: unchanged while read, and last written well before."""
        if stat_key(self.before) != stat_key(self.after):
            return False
        newest = max(self.after.st_mtime_ns, self.after.st_ctime_ns) / 1e9
        return newest <= self.started - SETTLE_SECONDS


def stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class PushIndex:
    def __init__(self, path: Path, files: dict[str, IndexedFile]) -> None:
        self.path = path
        self.files = files
        self._changes: dict[str, IndexedFile | None] = {}  # what this push set (None: forgot), for ``save``

    @classmethod
    def load(cls, home: Path) -> PushIndex:
        """The home's index; an index that is missing, unreadable or malformed is an empty one."""
        path = home / INDEX_FILE
        try:
            doc = json.loads(path.read_bytes())
            if doc.get("format") != INDEX_FORMAT or doc.get("version") != INDEX_VERSION:
                return cls(path, {})
            return cls(path, {k: _indexed(v) for k, v in doc["files"].items()})
        # RecursionError: damaged into "[[[[..." nested deeper than the parser's stack, as malformed as any
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            return cls(path, {})

    def named(self, source: Path) -> IndexedFile | None:
        """The entry for ``source`` whatever its stat now: a candidate that a push proves by reading the file
        (archive/proven_files.py), never one it trusts unread."""
        return self.files.get(_key(source))

    def lookup(self, source: Path) -> IndexedFile | None:
        """The entry for ``source`` if its stat now is exactly the one recorded; None otherwise."""
        entry = self.files.get(_key(source))
        if entry is None:
            return None
        try:
            st = os.stat(source)
        except OSError:
            return None
        return entry if entry.matches(st) else None

    def remember(self, reads: Iterable[FileRead], snapshot: str) -> None:
        """Record every settled file of a recorded snapshot; forget the others (they changed, or may change)."""
        for read in reads:
            key = _key(read.source)
            if not read.settled():
                self._set(key, None)
                continue
            size, mtime_ns, ctime_ns, ino, dev = stat_key(read.after)
            self._set(
                key,
                IndexedFile(size, mtime_ns, ctime_ns, ino, dev, read.sha256, snapshot, read.rel, time.time()),
            )

    def moved(self, files: Iterable[tuple[Path, str]], snapshot: str) -> None:
        """Point the entries of ``files`` (source path, path in the snapshot), taken unread by a push, at the
        snapshot it recorded; an entry whose file changed since it was looked up is forgotten."""
        for source, rel in files:
            entry = self.lookup(source)
            self._set(
                _key(source),
                None if entry is None else replace(entry, snapshot=snapshot, path=rel, at=time.time()),
            )

    def _set(self, key: str, entry: IndexedFile | None) -> None:
        if entry is None:
            self.files.pop(key, None)
        else:
            self.files[key] = entry
        self._changes[key] = entry

    def save(self) -> None:
        """Apply this push's changes to the index as it is on disk now, and write it atomically (temp file, fsync,
        rename). A push loads the index when it starts and saves when it ends, minutes later for a large model:
        writing back what it loaded would drop what any push that ended meanwhile recorded. Reloading first
        narrows that to the milliseconds between this reload and the rename (no lock file: locks in archive/ are
        catalog rows, and a lost entry costs one read, never a wrong answer)."""
        current = PushIndex.load(self.path.parent)
        for key, entry in self._changes.items():
            if entry is None:
                current.files.pop(key, None)
            else:
                current.files[key] = entry
        self.files = current.files
        self._write()
        self._changes.clear()

    def _write(self) -> None:
        if len(self.files) > MAX_ENTRIES:
            newest = sorted(self.files.items(), key=lambda kv: kv[1].at)[-MAX_ENTRIES:]
            self.files = dict(newest)
        doc = {
            "format": INDEX_FORMAT,
            "version": INDEX_VERSION,
            "files": {k: _doc(v) for k, v in self.files.items()},
        }
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(json.dumps(doc, separators=(",", ":")).encode())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)


def _key(source: Path) -> str:
    return os.path.abspath(source)


def _indexed(v: dict[str, Any]) -> IndexedFile:
    if not all(type(v[f]) is int for f in _STAT_FIELDS) or not all(
        isinstance(v[f], str) for f in ("sha256", "snapshot", "path")
    ):
        raise TypeError("malformed push index entry")
    return IndexedFile(
        v["size"],
        v["mtime_ns"],
        v["ctime_ns"],
        v["ino"],
        v["dev"],
        v["sha256"],
        v["snapshot"],
        v["path"],
        float(v["at"]),
    )


def _doc(e: IndexedFile) -> dict[str, Any]:
    return asdict(e)
