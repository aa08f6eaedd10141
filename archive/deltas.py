"""Families stored as deltas: which parent tensor each chunk of a new snapshot is tried against, and which bases a
snapshot must keep.

A fine-tune changes almost every tensor a little, so per-chunk dedup finds nothing to share; stored as a delta
(codec 3, storage/codecs/delta.py) against the same tensor of its parent it takes a third of the space or less.
Chunking is relative to the tensor (archive/ingest.py), so a same-name, same-dtype, same-shape tensor has chunks of
the same lengths in the same order, and chunk k is tried against the parent's chunk k. The store keeps the delta
only when it is smaller than the chunk encoded on its own (``ObjectStore.put_delta``).

A delta object is useless without its base, so a snapshot's object set includes the bases of its delta objects,
transitively (``base_closure``): gc and ``rm`` then never free a base a live snapshot needs, and a transfer sends
them. Such bases are recorded with ``as_base`` (registry ``snapshot_objects``): they are not the snapshot's content,
and reading the snapshot gives no right to read them (archive/access.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from modelarc.archive.manifest import Part, SnapshotManifest
from modelarc.errors import ModelarcError, ObjectMissingError, UsageError
from modelarc.registry import queries as q
from modelarc.registry.db import CatalogSession
from modelarc.storage import ObjectId, ObjectStore
from modelarc.storage.codecs.delta import MAX_DELTA_DEPTH


@dataclass(frozen=True)
class DeltaBases:
    """The base snapshot's tensors by name (and by file and name, which wins when a name occurs in several files)."""

    label: str  # the base snapshot, for messages
    by_name: Mapping[str, Part]
    by_file: Mapping[tuple[str, str], Part]
    rename: Mapping[str, str]  # a tensor of the new snapshot -> the base's tensor it is a fine-tune of

    def chunks_for(
        self, path: str, name: str, dtype: str, shape: tuple[int, ...]
    ) -> tuple[ObjectId, ...] | None:
        """The base chunk ids to try chunk by chunk, or None when the base has no same-name, same-dtype,
        same-shape tensor."""
        wanted = self.rename.get(name, name)
        part = self.by_file.get((path, wanted)) or self.by_name.get(wanted)
        if part is None or part.dtype != dtype or tuple(part.shape or ()) != tuple(shape):
            return None
        return tuple(c.id for c in part.chunks)


def delta_bases(
    manifest: SnapshotManifest, label: str, rename: Mapping[str, str] | None = None
) -> DeltaBases:
    by_name: dict[str, Part] = {}
    by_file: dict[tuple[str, str], Part] = {}
    for f in manifest.files:
        for part in f.tensors():
            if part.name is None:
                continue
            by_name.setdefault(part.name, part)
            by_file[(f.path, part.name)] = part
    # a typo in OLD matched nothing and the rename was silently ignored (every such tensor stored on its own)
    unknown = sorted({old for old in (rename or {}).values() if old not in by_name})
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise UsageError(f"--delta-rename: the base {label} has no tensor {unknown[0]!r}{more} (NEW=OLD: OLD is the base's)")
    return DeltaBases(label, by_name, by_file, dict(rename or {}))


def check_renamed_tensors(bases: DeltaBases, manifest: SnapshotManifest) -> None:
    """Refuse a ``--delta-rename NEW=OLD`` whose NEW is no tensor of the snapshot being pushed (a typo, else
    silently ignored): checked once the source is read, before anything is recorded."""
    names = {part.name for f in manifest.files for part in f.tensors() if part.name is not None}
    unknown = sorted(set(bases.rename) - names)
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise UsageError(
            f"--delta-rename: the model being pushed has no tensor {unknown[0]!r}{more} (NEW=OLD: NEW is its own)"
        )


def base_closure(
    store: ObjectStore, direct: Mapping[str, str | None], *, missing: list[str] | None = None
) -> set[str]:
    """Every object the delta objects among ``direct`` (object id -> its delta base or None) need, down their
    chains; bases not in ``direct`` are looked up in ``store`` (one header read each). A base the store lacks is
    appended to ``missing`` when given (else ``ObjectMissingError``). Chains are bounded by the format
    (``MAX_DELTA_DEPTH``) and cycles end at an object already seen."""
    out: set[str] = set()
    frontier = [b for b in direct.values() if b]
    while frontier:
        oid = frontier.pop()
        if oid in out:
            continue
        if oid in direct:
            base = direct[oid]
        else:
            try:
                base = store.delta_base(ObjectId(oid))
            except ObjectMissingError:
                if missing is None:
                    raise
                missing.append(oid)
                continue
        out.add(oid)
        if base:
            frontier.append(base)
    return out


def release_unneeded_bases(store: ObjectStore, s: CatalogSession, headers: Mapping[str, str | None]) -> int:
    """Drop every snapshot's ``as_base`` references that no chain of its objects reaches any more and that no
    stored object's header names as its base; the number dropped. Why: a delta rewritten on its own (a push's
    heal, repair) no longer needs its old base, yet its snapshots kept referencing it, and gc kept it for as long
    as they lived.

    ``headers`` must be the delta base (or None) of **every** catalogued object, as its header says, all of them
    read back intact just now (``repair --read-data`` under the store lock, after mending every one): a base
    some object decodes against is then never released, even when the catalog's references omit it (rows an older
    modelarc got wrong). Only references are dropped, never an object. A snapshot one of whose objects is not in
    ``headers`` keeps every reference."""
    named = {base for base in headers.values() if base is not None}
    dropped = 0
    for row_id in q.snapshots_keeping_bases(s):
        kept = q.base_object_ids(s, row_id)
        content = q.snapshot_object_ids(s, row_id) - kept
        if not content <= headers.keys():
            continue
        try:
            needed = base_closure(store, {oid: headers[oid] for oid in content})
        except (ModelarcError, OSError):
            continue
        if stale := kept - needed - named:
            q.release_snapshot_objects(s, row_id, stale)
            dropped += len(stale)
    return dropped


def send_order(
    store: ObjectStore, ids: Iterable[ObjectId], known: Mapping[str, str | None]
) -> list[list[ObjectId]]:
    """``ids`` in waves, each needing only objects of earlier waves as bases (a receiver decodes a delta against
    a base it already holds): objects stored on their own first, then deltas on them, and so on. ``known`` gives
    objects' bases as the catalog recorded them (None: not a delta); others are read from their headers."""
    depth: dict[str, int] = {}

    def depth_of(oid: str) -> int:
        path: list[str] = []
        current: str | None = oid
        while current is not None and current not in depth and len(path) <= MAX_DELTA_DEPTH + 1:
            path.append(current)
            current = known[current] if current in known else store.delta_base(ObjectId(current))
        level = depth.get(current, 0) if current is not None else -1
        for node in reversed(path):
            level += 1
            depth[node] = level
        return depth[oid]

    waves: dict[int, list[ObjectId]] = {}
    for oid in dict.fromkeys(ids):
        waves.setdefault(depth_of(oid), []).append(oid)
    return [waves[k] for k in sorted(waves)]
