"""Files a push proves unchanged by their chunk ids (archive/chunk_proof.py) instead of reading them as new files.

A file read as new is hashed twice: its whole-file sha256 on the reading thread, a serial pass, and each chunk's id
on the pool (archive/ingest.py). ``push --rehash`` of an unchanged 4.29 GB model took 3.25-3.5 s against 2.61 s for
sha256 of the files, and a file the push index names but whose stat changed (touched, copied back in place,
downloaded again) was read the same way. Now such a file is proven to hold the bytes of the entry the index names,
from the verified manifest of a snapshot the catalog records, and takes that entry, sha256 included; one that
differs is read as a new one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelarc.archive.chunk_proof import prove_files
from modelarc.archive.ingest import Reused
from modelarc.archive.push_index import FileRead

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Candidate:
    """A source file and the earlier entry it may be: the entry's objects are all in the store, none damaged."""

    rel: str
    path: Path
    reused: Reused


@dataclass(frozen=True)
class Proven:
    """A file whose every byte was read and found to be ``reused.entry``'s: taken as that entry, and remembered by
    the push index as read (``read``)."""

    reused: Reused
    read: FileRead


def prove_unchanged(
    candidates: list[Candidate], progress: Progress | None = None, workers: int | None = None
) -> tuple[dict[str, Proven], int]:
    """The candidates whose files hold exactly their entries' bytes, by rel; and how many bytes were hashed in
    files that turned out to differ (a caller's progress bar counts them once more when those files are read).

    A file that cannot be opened, that differs, or that ends early is left out: the push reads it as a new file
    and says what is wrong with it there."""
    proofs, wasted = prove_files([(c.path, c.reused.entry) for c in candidates], progress, workers)
    proven = {
        c.rel: Proven(c.reused, FileRead(c.path, c.rel, p.before, p.after, p.started, c.reused.entry.sha256))
        for c, p in zip(candidates, proofs, strict=True)
        if p is not None
    }
    return proven, wasted
