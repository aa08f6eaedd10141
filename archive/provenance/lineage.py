"""Lineage: the declared derivation graph around a snapshot, and what the tensors show of each declared parent.

Evidence rule (``check_lineage``). Only *informative* tensors count (floating point, not constant: initial values
such as all-ones norms, zero biases or integer position ids are the same in unrelated models and prove nothing),
and only those the parent and child both have with one shape and dtype (the *compared* ones). A compared tensor
supports the parent when it is identical (same stored digest) or close: its relative L2 change ||child - parent|| /
||parent|| is below ``EVIDENCE_THRESHOLD`` (0.5). Independent random initialisations of the same architecture
differ by a relative L2 of about sqrt(2) (~1.41); fine-tunes change tensors by well under 0.1.

The evidence is weighed by parameters, not counted by tensors: one shared 64x64 tensor in an otherwise unrelated
model is 4% of its parameters, not proof. ``supported_fraction`` is the share of the compared parameters in
supporting tensors, and the verdict is

- ``related`` when it is at least ``RELATED_FRACTION`` (0.75). The genuine fine-tunes the suite trains
  (tests/finetunes.py: a base and light, medium and strong fine-tunes) have every compared parameter close
  (1.0, largest relative L2 0.008); a fine-tune that re-initialises a head of the same shape keeps well above
  three quarters (the tiny Llama's lm_head is 13% of it).
- ``partial`` when it is at least ``PARTIAL_FRACTION`` (0.01) but less: some tensors are shared or close, most are
  not (a shared embedding or layer copied into another model; a heavy re-training).
- ``none`` otherwise. Two independently trained models of the suite's family share 0.3% of their parameters as
  close (their norm weights, which start as ones in both and move little): below the floor.

The tensors are symmetric: they show that two snapshots are related, never which one came first. A base declared
as the child of its own fine-tune is ``related`` too; the direction is what was declared, and the report says so
(``direction_shown: false``).

Delta evidence: when the child's chunks are stored as deltas (codec 3) against this parent's chunks, the push
measured both encodings. The XOR of two independent tensors is as random as either, so a delta against an
unrelated tensor is no smaller than the chunk on its own; deltas at most ``DELTA_EVIDENCE`` (0.8) of the size on
their own (a real fine-tune: 0.3-0.7) support the parent over the share of the child's tensor chunks they cover,
which counts when it exceeds the tensors' share (values of a dtype the comparison cannot decode).

A parent withdrawn here may have had its weights freed (``gc``): then there is nothing to compare, and the report
says so (``verdict: parent_withdrawn``) instead of failing as if the store were damaged.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelarc.archive.manifest import Part, SnapshotManifest
from modelarc.archive.provenance.diff import TensorChange, as_float64, compare_manifests
from modelarc.archive.repository import Archive
from modelarc.errors import ObjectMissingError
from modelarc.registry import lineage_queries as lq
from modelarc.registry import queries as q
from modelarc.registry.lineage_queries import LineageNode
from modelarc.registry.refs import Ref, SnapshotId
from modelarc.registry.snapshots import ParentLink, parents_of
from modelarc.storage import ObjectId

EVIDENCE_THRESHOLD = 0.5
DELTA_EVIDENCE = 0.8
RELATED_FRACTION = 0.75
PARTIAL_FRACTION = 0.01


@dataclass(frozen=True)
class LineageTree:
    """``modelarc lineage``: the declared ancestors and descendants of one snapshot, each with its relation."""

    ref: str
    snapshot: SnapshotId
    model: str
    ancestors: tuple[LineageNode, ...]  # parents, each with its own parents as children
    descendants: tuple[LineageNode, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "snapshot": self.snapshot,
            "model": self.model,
            "ancestors": [n.to_json() for n in self.ancestors],
            "descendants": [n.to_json() for n in self.descendants],
        }


def lineage_tree(archive: Archive, ref: Ref | str) -> LineageTree:
    resolved, snap = archive.resolve(ref)
    with archive.catalog.session() as s:
        up = lq.ancestors(s, snap).children
        down = lq.descendants(s, snap).children
    return LineageTree(str(resolved), snap.digest, snap.model, up, down)


@dataclass(frozen=True)
class ParentEvidence:
    parent_model: str
    parent_snapshot: SnapshotId
    relation: str
    identical: int
    changed: int
    shape_changed: int
    only_in_child: int
    only_in_parent: int
    max_relative_l2: float | None
    median_relative_l2: float | None
    top_changes: list[TensorChange]
    no_evidence: bool  # verdict "none": nothing identical or close (below the floor), no delta evidence
    tensor_chunks: int = 0  # the child's tensor chunks
    delta_chunks: int = 0  # of them, stored as deltas against this parent's chunks
    delta_stored_bytes: int = 0
    delta_standalone_bytes: int = 0  # what the measured ones would take on their own
    delta_ratio: float | None = None  # stored / on their own, over the measured deltas
    # "related", "partial", "none" (see the module docstring), or "parent_withdrawn": its weights are gone
    verdict: str = "none"
    compared_parameters: int = 0  # of informative tensors both have with one shape and dtype
    supported_fraction: float = 0.0  # of those, the share in identical or close tensors (or in good deltas)
    direction_shown: bool = False  # the tensors never show which of the two came first
    parent_withdrawn_reason: str | None = None


def check_lineage(archive: Archive, ref_text: str) -> list[ParentEvidence]:
    _ref, snap = archive.resolve(ref_text)
    with archive.catalog.session() as s:
        parents = [
            (p, q.resolve_snapshot(s, Ref(*p.model.split("/", 1), digest=p.snapshot)))
            for p in parents_of(s, snap.row_id)
        ]
    child_manifest = archive.manifest(snap)
    out = []
    for parent, record in parents:
        parent_manifest = archive.manifest_by_id(parent.snapshot)
        try:
            out.append(_evidence(archive, parent, parent_manifest, child_manifest))
        except ObjectMissingError:
            if not record.withdrawn:
                raise  # the store lost what it should hold: that is damage, and said as such
            out.append(_withdrawn_parent(parent, record.tombstone_reason))
    return out


def _evidence(
    archive: Archive, parent: ParentLink, parent_manifest: SnapshotManifest, child_manifest: SnapshotManifest
) -> ParentEvidence:
    diff = compare_manifests(archive, parent_manifest, child_manifest)
    parent_parts = {p.name: p for _f, p in parent_manifest.tensors()}
    informative = {name for name, part in parent_parts.items() if _informative(archive, part)}
    sizes = {name: math.prod(parent_parts[name].shape or ()) for name in informative}
    changed = [c for c in diff.changed if c.name in informative]
    rels = sorted(c.relative_l2 for c in changed if c.relative_l2 is not None)
    compared = sum(sizes[c.name] for c in changed) + sum(
        sizes[name] for name in diff.identical_names if name in informative
    )
    supporting = sum(
        sizes[c.name] for c in changed if c.relative_l2 is not None and c.relative_l2 < EVIDENCE_THRESHOLD
    ) + sum(sizes[name] for name in diff.identical_names if name in informative)
    fraction = supporting / compared if compared else 0.0
    deltas = _delta_evidence(archive, parent_manifest, child_manifest)
    if (
        deltas["delta_ratio"] is not None
        and deltas["delta_ratio"] <= DELTA_EVIDENCE
        and deltas["tensor_chunks"]
    ):
        fraction = max(fraction, deltas["delta_chunks"] / deltas["tensor_chunks"])
    if fraction >= RELATED_FRACTION:
        verdict = "related"
    elif fraction >= PARTIAL_FRACTION:
        verdict = "partial"
    else:
        verdict = "none"
    return ParentEvidence(
        parent_model=parent.model,
        parent_snapshot=parent.snapshot,
        relation=parent.relation,
        identical=diff.identical,
        changed=len(diff.changed),
        shape_changed=len(diff.shape_changed),
        only_in_child=len(diff.added),
        only_in_parent=len(diff.removed),
        max_relative_l2=rels[-1] if rels else None,
        median_relative_l2=statistics.median(rels) if rels else None,  # of an even count: the middle two's mean
        top_changes=sorted(diff.changed, key=lambda c: -(c.relative_l2 or 0))[:5],
        no_evidence=verdict == "none",
        **deltas,
        verdict=verdict,
        compared_parameters=compared,
        supported_fraction=fraction,
    )


def _withdrawn_parent(parent: ParentLink, reason: str | None) -> ParentEvidence:
    return ParentEvidence(
        parent_model=parent.model,
        parent_snapshot=parent.snapshot,
        relation=parent.relation,
        identical=0,
        changed=0,
        shape_changed=0,
        only_in_child=0,
        only_in_parent=0,
        max_relative_l2=None,
        median_relative_l2=None,
        top_changes=[],
        no_evidence=True,
        verdict="parent_withdrawn",
        parent_withdrawn_reason=reason,
    )


def _delta_evidence(archive: Archive, parent: SnapshotManifest, child: SnapshotManifest) -> dict[str, Any]:
    """What the catalog recorded of the child's chunks stored as deltas against the parent's (no decoding)."""
    child_chunks = {c.id for _f, p in child.tensors() for c in p.chunks}
    parent_chunks = {c.id for _f, p in parent.tensors() for c in p.chunks}
    with archive.catalog.session() as s:
        rows = [r for r in q.delta_objects(s, child_chunks) if r.delta_base in parent_chunks]
    measured = [r for r in rows if r.standalone_size]
    standalone = sum(r.standalone_size or 0 for r in measured)
    return {
        "tensor_chunks": len(child_chunks),
        "delta_chunks": len(rows),
        "delta_stored_bytes": sum(r.stored_size for r in rows),
        "delta_standalone_bytes": standalone,
        "delta_ratio": (sum(r.stored_size for r in measured) / standalone) if standalone else None,
    }


def _informative(archive: Archive, part: Part) -> bool:
    """A floating-point tensor whose first chunk is not one repeated value."""
    if part.dtype not in ("F32", "F16", "BF16", "F64") or not part.chunks:
        return False
    values = as_float64(archive.store.get(ObjectId(part.chunks[0].id)), part.dtype)
    return values is not None and values.size > 1 and float(np.ptp(values)) > 0.0
