"""What a snapshot received or replayed is recorded with, derived from its own manifest and config.json in the store.

A received commit (archive/remote/commit.py) and a catalog rebuilt from records (archive/rebuild.py) both record a
snapshot whose figures someone else stated: the sender's offer, or a record anyone who can write the store could
have written. Both take the figures from here instead, so neither can make the catalog disagree with the weights.
A local push takes its architecture from here too (``pushed_architecture``): from the bytes it archived, not from
the folder, which may have changed since it was read.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

from modelarc.archive.formats.describe import (
    architecture_from_config,
    architecture_from_gguf,
    parameter_counts,
)
from modelarc.archive.formats.gguf import read_layout as read_gguf_layout
from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.restore import file_chunks
from modelarc.storage.store import ObjectStore

MAX_CONFIG_BYTES = 4 << 20  # config.json is read back from the store to describe the architecture


@dataclass(frozen=True)
class SnapshotFigures:
    """The numbers and architecture a catalog keeps for a snapshot (``NewSnapshot``'s fields of the same names)."""

    logical_bytes: int
    parameter_count: int
    dtypes: dict[str, int]
    architecture: dict[str, Any]

    def differences(self, stated: dict[str, Any]) -> list[str]:
        """The fields of ``stated`` (a record's or an offer's figures) that say otherwise than these, by name."""
        return [
            name
            for name, derived in (
                ("logical_bytes", self.logical_bytes),
                ("parameter_count", self.parameter_count),
                ("dtypes", self.dtypes),
                ("architecture", self.architecture),
            )
            if name in stated and stated[name] != derived
        ]


def snapshot_figures(
    store: ObjectStore, manifest: SnapshotManifest, stated_architecture: dict[str, Any]
) -> SnapshotFigures:
    """Sizes and parameters from the manifest; the architecture from the snapshot's config.json as stored, else the
    stated one (a GGUF-only model's architecture is read from its header at push time, which is not re-read here:
    only then is the sender's word kept). config.json's objects must be in ``store``.

    The presence of config.json decides, not what it yields (docs/FORMAT.md "Transfer"): one without architecture
    fields, or unreadable, gives {} as it does at a local push, never the sender's statement, which would let an
    offer describe weights its own config.json does not."""
    params, dtypes = parameter_counts(manifest)
    has_config = any(f.path == "config.json" for f in manifest.files)
    return SnapshotFigures(
        logical_bytes=manifest.logical_bytes,
        parameter_count=params,
        dtypes=dtypes,
        architecture=stored_architecture(store, manifest) if has_config else dict(stated_architecture),
    )


def stored_architecture(store: ObjectStore, manifest: SnapshotManifest) -> dict[str, Any]:
    """Derived from the stored config.json, as a push derives it from the file; {} without a readable one."""
    entry = next((f for f in manifest.files if f.path == "config.json"), None)
    if entry is None or entry.size > MAX_CONFIG_BYTES:
        return {}
    data = b"".join(bytes(store.get(c.id)) for c in file_chunks(entry))
    try:
        doc = json.loads(data)
    # ValueError: JSONDecodeError, UnicodeDecodeError, and an integer of more than 4300 digits (Python's int
    # conversion limit); RecursionError: "[[[[..." nested too deeply. Each is an unreadable config.json.
    except (ValueError, RecursionError):
        return {}
    return architecture_from_config(doc) if isinstance(doc, dict) else {}


def pushed_architecture(store: ObjectStore, manifest: SnapshotManifest) -> dict[str, Any]:
    """What a local push records: the stored config.json's architecture when the snapshot has one (as
    ``stored_architecture``, so a rebuild or a receiver derives the same), else the first GGUF file's, from its
    stored header; {} otherwise.

    Read back from the store, not from the source folder: a config.json or GGUF file rewritten after the push read
    it would otherwise be catalogued as one model and archived as another. ``manifest``'s objects must be in
    ``store``.
    """
    if any(f.path == "config.json" for f in manifest.files):
        return stored_architecture(store, manifest)
    entry = next((f for f in manifest.files if f.kind == "gguf"), None)
    if entry is None or not entry.parts:
        return {}
    header = b"".join(bytes(store.get(c.id)) for c in entry.parts[0].chunks)
    layout = read_gguf_layout(io.BytesIO(header), entry.path, entry.size)  # parsed once already by the push
    return architecture_from_gguf(layout.metadata, [t.dtype for t in layout.tensors])
