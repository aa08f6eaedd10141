"""A file rewritten in place while a push reads it (same size, other bytes) is refused: the bytes read were a mix
of two versions the file never held at once, and the snapshot recorded that mix as the file (a file that grew was
already refused). The rewrite is made from the push's own progress callback, after its first chunk was read, so
the test does not race the reader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelarc.archive.repository import Archive
from modelarc.errors import SourceError

SIZE = 20 * 1024 * 1024  # three 8 MiB chunks: the rewrite lands while the file is being read


def _source(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(os.urandom(SIZE))
    return folder / "weights.bin"


def test_a_file_rewritten_in_place_during_the_push_is_refused(archive: Archive, tmp_path: Path) -> None:
    path = _source(tmp_path)
    done = []

    def rewrite(_n: int) -> None:
        if not done:
            done.append(True)
            mtime = path.stat().st_mtime_ns
            with open(path, "r+b") as f:  # same size: only the bytes and the times change
                f.seek(SIZE - 4096)
                f.write(os.urandom(4096))
            os.utime(path, ns=(mtime, mtime + 1_000_000_000))

    with pytest.raises(SourceError, match="changed while being read"):
        archive.push(path.parent, "acme/moving:v1", progress=rewrite)
    assert done
    assert list(archive.iter_snapshot_labels()) == []


def test_a_file_left_alone_during_the_push_is_archived(archive: Archive, tmp_path: Path) -> None:
    path = _source(tmp_path)
    seen = []
    archive.push(path.parent, "acme/still:v1", progress=seen.append)
    assert sum(seen) == SIZE
    archive.pull("acme/still:v1", tmp_path / "out")
    assert (tmp_path / "out" / "weights.bin").read_bytes() == path.read_bytes()
