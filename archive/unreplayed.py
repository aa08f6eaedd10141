"""Snapshots the store's catalog records name and the catalog lacks, and the objects a rebuild would need of them.

Such a snapshot is one a `rebuild-catalog` refused (an object was missing: the primary lost a chunk a mirror still
has), or one whose push died between its record and its commit. No catalog row references its objects, yet they may
be the last copy of something a later rebuild brings back (after `repair` fetched what was missing). So `gc` keeps
them, and `repair` fetches from the mirrors those the primary lacks (docs/FORMAT.md "Catalog records").

What a rebuild needs of such a snapshot is what ``archive/rebuild.py`` checks: its manifest, the bundles its records
list, every chunk of its manifest (only the files without weights when a ``withdraw`` record withdraws it),
and the bases of its delta objects down their chains.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from modelarc.archive.manifest import SnapshotManifest
from modelarc.archive.records import CatalogRecord
from modelarc.archive.weights import weight_object_ids
from modelarc.errors import ModelarcError, UnsupportedObjectError
from modelarc.registry.refs import SnapshotId, parse_model_name
from modelarc.storage import ObjectId, ObjectStore


@dataclass(frozen=True)
class UnreplayedSnapshot:
    """A snapshot of the store's ``snapshot`` records that the catalog does not hold."""

    model: str
    snapshot: SnapshotId
    bundles: frozenset[str]  # bundle object ids its records list
    withdrawn: bool  # a ``withdraw`` record of it withdraws it (a rebuild then needs no weights of it)

    @property
    def label(self) -> str:
        return f"{self.model}@{self.snapshot}"


@dataclass
class NeededObjects:
    """The objects unreplayed snapshots need, and those snapshots whose manifest could not be read (so which
    chunks they need is unknown): label -> why."""

    ids: set[str] = field(default_factory=set)
    unreadable: dict[str, str] = field(default_factory=dict)
    # object id -> why: a needed object of a newer format, whose bases (if any) this modelarc cannot tell
    unsupported: dict[str, str] = field(default_factory=dict)
    labels: dict[str, list[str]] = field(default_factory=dict)  # object id -> the snapshots that need it


def unreplayed_snapshots(records: Iterable[CatalogRecord], catalogued: set[str]) -> list[UnreplayedSnapshot]:
    """The snapshots ``records`` (in replay order: ``read_records``, which reads each once and refuses a damaged
    one) name whose id is not in ``catalogued`` (snapshot ids the catalog holds, under any model: their objects
    the catalog references itself). A record whose fields are garbled is left out: a rebuild refuses it too."""
    first: set[tuple[str, str]] = set()  # (model, snapshot)
    bundles: dict[tuple[str, str], set[str]] = {}
    withdrawn: set[tuple[str, str]] = set()
    for rec in records:
        if rec.kind not in ("snapshot", "withdraw"):
            continue
        try:
            b = rec.body
            namespace, name = parse_model_name(b["model"])
            pair = (f"{namespace}/{name}", str(SnapshotId(b["snapshot"])))
            if rec.kind == "withdraw":
                withdrawn.add(pair)
                continue
            listed = {str(ObjectId(sig["object"])) for sig in b.get("signatures") or []}
        except (ModelarcError, KeyError, TypeError, ValueError, AttributeError):
            continue
        if pair[1] in catalogued:
            continue
        first.add(pair)
        bundles.setdefault(pair, set()).update(listed)
    return [
        UnreplayedSnapshot(
            model,
            SnapshotId(digest),
            frozenset(bundles[(model, digest)]),
            # a withdraw record replays after its snapshot's first record, whatever its name (archive/record_order.py)
            (model, digest) in withdrawn,
        )
        for (model, digest) in sorted(first)
    ]


def needed_objects(store: ObjectStore, snapshots: list[UnreplayedSnapshot]) -> NeededObjects:
    """What a rebuild needs of ``snapshots`` (module docstring), from each manifest in ``store`` and the delta
    headers of the objects present; a manifest that is missing or does not re-hash is named in ``unreadable``."""
    out = NeededObjects()
    # a snapshot id under several models is one manifest: its weights are needed if any of them is not withdrawn
    weights_needed: dict[str, bool] = {}
    for snap in snapshots:
        weights_needed[snap.snapshot] = weights_needed.get(snap.snapshot, False) or not snap.withdrawn
    manifests: dict[str, SnapshotManifest | None] = {}
    for snap in snapshots:
        ids = {snap.snapshot.hex} | set(snap.bundles)
        if snap.snapshot not in manifests:
            try:
                data = store.get(ObjectId(snap.snapshot.hex))
                manifests[snap.snapshot] = SnapshotManifest.from_bytes(bytes(data), expected_id=snap.snapshot)
            except UnsupportedObjectError as exc:  # what it needs is unknown: as for a delta of a newer codec
                manifests[snap.snapshot] = None
                out.unsupported[snap.snapshot.hex] = str(exc)
            except ModelarcError as exc:
                manifests[snap.snapshot] = None
                out.unreadable[snap.label] = str(exc)
        manifest = manifests[snap.snapshot]
        if manifest is not None:
            # a withdrawn one keeps what a withdrawal keeps: all but its released weights (headers and pad parts
            # of safetensors and GGUF files too, which a rebuild checks are present)
            every = {str(c) for c in manifest.object_ids()}
            ids |= every if weights_needed[snap.snapshot] else every - weight_object_ids(manifest)
        for oid in ids:
            out.labels.setdefault(oid, []).append(snap.label)
        out.ids |= ids
    # the bases of delta objects down their chains, from the headers of those present (an absent one has none
    # to tell; once fetched, the next run follows it)
    frontier = sorted(out.ids)
    while frontier:
        oid = frontier.pop()
        try:
            base = store.delta_base(ObjectId(oid))
        except UnsupportedObjectError as exc:  # it may need bases: never taken for an object that needs none
            out.unsupported[oid] = str(exc)
            continue
        except ModelarcError:
            continue
        if base is not None and str(base) not in out.ids:
            out.ids.add(str(base))
            out.labels.setdefault(str(base), []).extend(out.labels.get(oid, []))
            frontier.append(str(base))
    return out
