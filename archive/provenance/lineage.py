"""Lineage: the declared derivation graph around a snapshot, and whether the tensors back each declared parent.

Evidence rule (``check_lineage``): a declared parent is supported when at least one *informative* shared tensor
(floating point, not constant: initial values such as all-ones norms, zero biases or integer position ids are the
same in unrelated models and prove nothing) is either identical (same stored digest) or close, i.e. its relative
L2 change ||child - parent|| / ||parent|| is below ``EVIDENCE_THRESHOLD`` (0.5). Independent random
initialisations of the same architecture differ by a relative L2 of about sqrt(2) (~1.41); fine-tunes typically
change tensors by well under 0.1, so the threshold sits far from both.

Delta evidence: when the child's chunks are stored as deltas (codec 3) against this parent's chunks, the push
measured both encodings. The XOR of two independent tensors is as random as either, so a delta against an
unrelated tensor is no smaller than the chunk on its own; deltas at most ``DELTA_EVIDENCE`` (0.8) of the size on
their own (a real fine-tune: 0.3-0.7) support the parent too, and are reported with the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelarc.archive.manifest import Part, SnapshotManifest
from modelarc.archive.provenance.diff import TensorChange, as_float64, compare_manifests
from modelarc.archive.repository import Archive
from modelarc.registry import lineage_queries as lq
from modelarc.registry import queries as q
from modelarc.registry.lineage_queries import LineageNode
from modelarc.registry.refs import Ref, SnapshotId
from modelarc.registry.snapshots import parents_of
from modelarc.storage import ObjectId

EVIDENCE_THRESHOLD = 0.5
DELTA_EVIDENCE = 0.8


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
    no_evidence: bool
    tensor_chunks: int = 0  # the child's tensor chunks
    delta_chunks: int = 0  # of them, stored as deltas against this parent's chunks
    delta_stored_bytes: int = 0
    delta_standalone_bytes: int = 0  # what the measured ones would take on their own
    delta_ratio: float | None = None  # stored / on their own, over the measured deltas


def check_lineage(archive: Archive, ref_text: str) -> list[ParentEvidence]:
    _ref, snap = archive.resolve(ref_text)
    with archive.catalog.session() as s:
        parents = parents_of(s, snap.row_id)
    child_manifest = archive.manifest(snap)
    out = []
    for parent in parents:
        parent_manifest = archive.manifest_by_id(parent.snapshot)
        diff = compare_manifests(archive, parent_manifest, child_manifest)
        parent_parts = {p.name: p for _f, p in parent_manifest.tensors()}
        informative = {name for name, part in parent_parts.items() if _informative(archive, part)}
        rels = sorted(
            c.relative_l2 for c in diff.changed if c.relative_l2 is not None and c.name in informative
        )
        close = any(r < EVIDENCE_THRESHOLD for r in rels)
        same = any(name in informative for name in diff.identical_names)
        deltas = _delta_evidence(archive, parent_manifest, child_manifest)
        by_delta = deltas["delta_ratio"] is not None and deltas["delta_ratio"] <= DELTA_EVIDENCE
        no_evidence = not (same or close or by_delta)
        out.append(
            ParentEvidence(
                parent_model=parent.model,
                parent_snapshot=parent.snapshot,
                relation=parent.relation,
                identical=diff.identical,
                changed=len(diff.changed),
                shape_changed=len(diff.shape_changed),
                only_in_child=len(diff.added),
                only_in_parent=len(diff.removed),
                max_relative_l2=rels[-1] if rels else None,
                median_relative_l2=rels[len(rels) // 2] if rels else None,
                top_changes=sorted(diff.changed, key=lambda c: -(c.relative_l2 or 0))[:5],
                no_evidence=no_evidence,
                **deltas,
            )
        )
    return out


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
