"""The catalog rows a manifest's files and tensors become.

Apart from archive/push.py because a remote pull and a catalog rebuild record manifests too, and importing the push
pipeline for this (ingest, the push index, the format readers) cost a remote pull ~15 ms of start-up (issue 12).
"""

from __future__ import annotations

from modelarc.archive.manifest import SnapshotManifest
from modelarc.registry.records import NewFile, NewTensor


def catalog_files(manifest: SnapshotManifest) -> tuple[NewFile, ...]:
    """The per-file and per-tensor rows the catalog keeps for queries, from a manifest."""
    return tuple(
        NewFile(
            path=f.path,
            size=f.size,
            sha256=f.sha256,
            kind=f.kind,
            tensors=tuple(
                NewTensor(p.name or "", p.dtype or "", tuple(p.shape or ()), p.offset, p.length, p.digest)
                for p in f.tensors()
            ),
        )
        for f in manifest.files
    )
