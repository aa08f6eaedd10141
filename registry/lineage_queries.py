"""Walking the lineage graph: ancestors and descendants of a snapshot, breadth-first, one query per level."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from modelarc.registry.models import Lineage, Snapshot


@dataclass
class LineageNode:
    snapshot_id: int
    digest: str
    model: str
    relation: str | None  # how this node relates to the node above it in the tree
    withdrawn: bool
    children: list[LineageNode] = field(default_factory=list)


def _node(snap: Snapshot, relation: str | None) -> LineageNode:
    return LineageNode(snap.id, snap.digest, snap.model.full_name, relation, snap.tombstoned_at is not None)


def _walk(s: Session, root: Snapshot, *, up: bool, max_depth: int = 64) -> LineageNode:
    """Expand one level at a time with one query per level; a snapshot already seen is not expanded again."""
    top = _node(root, None)
    frontier = {root.id: [top]}
    seen = {root.id}
    for _ in range(max_depth):
        if not frontier:
            break
        ids = list(frontier)
        own, other = (Lineage.child_id, Lineage.parent_id) if up else (Lineage.parent_id, Lineage.child_id)
        rows = s.execute(
            select(own, Lineage.relation, Snapshot)
            .join(Snapshot, Snapshot.id == other)
            .where(own.in_(ids))
            .options(selectinload(Snapshot.model))
            .order_by(Snapshot.created_at)
        ).all()
        nxt: dict[int, list[LineageNode]] = {}
        for anchor_id, relation, snap in rows:
            node = _node(snap, relation)
            for holder in frontier[anchor_id]:
                holder.children.append(node)
            if snap.id not in seen:
                seen.add(snap.id)
                nxt.setdefault(snap.id, []).append(node)
        frontier = nxt
    return top


def ancestors(s: Session, snap: Snapshot) -> LineageNode:
    return _walk(s, snap, up=True)


def descendants(s: Session, snap: Snapshot) -> LineageNode:
    return _walk(s, snap, up=False)
