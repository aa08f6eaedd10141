"""Walking the lineage graph: ancestors and descendants of a snapshot, breadth-first, one query per level."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, select, tuple_
from sqlalchemy.orm import Session

from modelarc.registry.models import Lineage, Model, Snapshot
from modelarc.registry.refs import SnapshotId
from modelarc.registry.snapshots import SnapshotRecord


@dataclass(frozen=True)
class LineageNode:
    snapshot_id: int  # the catalog row id (kept in the JSON, which has always carried it)
    digest: SnapshotId
    model: str
    relation: str | None  # how this node relates to the node above it in the tree
    withdrawn: bool
    children: tuple[LineageNode, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "snapshot_id": self.snapshot_id,
            "digest": self.digest,
            "model": self.model,
            "relation": self.relation,
            "withdrawn": self.withdrawn,
            "children": [c.to_json() for c in self.children],
        }


@dataclass
class _Growing:
    """A node while the walk is still adding children to it."""

    snapshot_id: int
    digest: str
    model: str
    relation: str | None
    withdrawn: bool
    children: list[_Growing] = field(default_factory=list)

    def frozen(self) -> LineageNode:
        return LineageNode(
            self.snapshot_id,
            SnapshotId(self.digest),
            self.model,
            self.relation,
            self.withdrawn,
            tuple(c.frozen() for c in self.children),
        )


def _walk(s: Session, root: SnapshotRecord, *, up: bool, max_depth: int = 64) -> LineageNode:
    """Expand one level at a time with one query per level (the model's name joined in, not loaded per row); a
    snapshot already seen is not expanded again."""
    top = _Growing(root.row_id, root.digest, root.model, None, root.withdrawn)
    frontier = {root.row_id: [top]}
    seen = {root.row_id}
    own, other = (Lineage.child_id, Lineage.parent_id) if up else (Lineage.parent_id, Lineage.child_id)
    # one statement for every level, its ids bound when it runs: `in_(ids)` built per level checked every id
    level = (
        select(
            own,
            Lineage.relation,
            Snapshot.id,
            Snapshot.digest,
            Snapshot.tombstoned_at,
            Model.namespace,
            Model.name,
        )
        .join(Snapshot, Snapshot.id == other)
        .join(Model, Model.id == Snapshot.model_id)
        .where(own.in_(bindparam("frontier", expanding=True)))
        .order_by(Snapshot.created_at)
    )
    for _ in range(max_depth):
        if not frontier:
            break
        rows = s.execute(level, {"frontier": list(frontier)}).all()
        nxt: dict[int, list[_Growing]] = {}
        for anchor_id, relation, snap_id, digest, tombstoned_at, namespace, name in rows:
            node = _Growing(snap_id, digest, f"{namespace}/{name}", relation, tombstoned_at is not None)
            for holder in frontier[anchor_id]:
                holder.children.append(node)
            if snap_id not in seen:
                seen.add(snap_id)
                nxt.setdefault(snap_id, []).append(node)
        frontier = nxt
    return top.frozen()


def ancestors(s: Session, snap: SnapshotRecord) -> LineageNode:
    return _walk(s, snap, up=True)


def descendants(s: Session, snap: SnapshotRecord) -> LineageNode:
    return _walk(s, snap, up=False)


# A bound on every walk below: lineage is acyclic as recorded now, but a catalog an older modelarc wrote may hold a
# cycle, and a walk that keeps a visited set ends on it anyway; the bound only caps the queries a deep chain costs.
_MAX_WALK = 10_000


def ancestor_ids(s: Session, snapshot_id: int) -> set[int]:
    """Row ids of every recorded ancestor of the snapshot ``snapshot_id`` (not itself, unless on a cycle)."""
    found: set[int] = set()
    frontier = {snapshot_id}
    step = select(Lineage.parent_id).where(Lineage.child_id.in_(bindparam("ids", expanding=True)))
    for _ in range(_MAX_WALK):
        if not frontier:
            break
        frontier = set(s.scalars(step, {"ids": list(frontier)})) - found
        found |= frontier
    return found


def snapshot_row_id(s: Session, namespace: str, name: str, digest: str) -> int | None:
    return s.scalar(
        select(Snapshot.id)
        .join(Model, Model.id == Snapshot.model_id)
        .where(Model.namespace == namespace, Model.name == name, Snapshot.digest == digest)
    )


def declared_ancestry_reaches(s: Session, snapshot_id: int, model: str, digest: str) -> bool:
    """Whether snapshot ``model``@``digest`` is an ancestor of the snapshot ``snapshot_id`` by lineage recorded or
    declared: an edge, or a parent a snapshot declared while the catalog lacked it (``unrecorded_parents``), which
    a later recording of that snapshot would turn into an edge."""
    seen: set[int] = set()
    frontier = {snapshot_id}
    edges = select(Lineage.parent_id).where(Lineage.child_id.in_(bindparam("ids", expanding=True)))
    declared = select(Snapshot.unrecorded_parents).where(
        Snapshot.id.in_(bindparam("ids", expanding=True)), Snapshot.unrecorded_parents.is_not(None)
    )
    for _ in range(_MAX_WALK):
        if not frontier:
            return False
        seen |= frontier
        nxt = set(s.scalars(edges, {"ids": list(frontier)}))
        named = {
            (str(p.get("model")), str(p.get("snapshot")))
            for listed in s.scalars(declared, {"ids": list(frontier)})
            for p in (listed if isinstance(listed, list) else [])
            if isinstance(p, dict)
        }
        if (model, digest) in named:
            return True
        if named:  # those the catalog holds now: their own lineage, recorded or declared, goes on
            nxt |= set(
                s.scalars(
                    select(Snapshot.id)
                    .join(Model, Model.id == Snapshot.model_id)
                    .where(tuple_(Model.namespace + "/" + Model.name, Snapshot.digest).in_(sorted(named)))
                )
            )
        frontier = nxt - seen
    return False
