"""The history of a tag as a sequence of snapshots, newest first, for the Hub's commit listings.

A tag's history is every snapshot it has pointed at, each once, ordered by the last time the tag moved onto it: the
first entry is where the tag points now. A tag moved back to an older snapshot lists that snapshot first again (a
branch reset to an earlier commit, in git terms), so entries are in move order, not in creation order.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from modelarc.registry.models import Snapshot, TagHistory
from modelarc.registry.snapshots import SnapshotRecord, snapshot_record

_BATCH = 500  # ids per IN (...) list, under every backend's bind-parameter limit


def tag_history(
    s: Session, model_id: int, tag: str, *, limit: int | None = None, offset: int = 0
) -> list[SnapshotRecord]:
    """One page of the snapshots ``tag`` of the model (row id ``model_id``) has named, newest move first."""
    last_move = (
        select(TagHistory.new_snapshot_id.label("snapshot_id"), func.max(TagHistory.id).label("last"))
        .where(TagHistory.model_id == model_id, TagHistory.tag == tag)
        .group_by(TagHistory.new_snapshot_id)
        .subquery()
    )
    q = (
        select(Snapshot)
        .join(last_move, last_move.c.snapshot_id == Snapshot.id)
        .order_by(last_move.c.last.desc())
        .options(selectinload(Snapshot.model))
        .offset(offset or None)
    )
    return [snapshot_record(row) for row in s.scalars(q.limit(limit) if limit is not None else q)]


def first_tags(s: Session, model_id: int, snapshot_ids: Sequence[int]) -> dict[int, str]:
    """The tag each snapshot was first given in this model: the tag it was pushed (or first tagged) as.

    Snapshots recorded without a tag (received by digest) are left out.
    """
    out: dict[int, str] = {}
    ids = list(dict.fromkeys(snapshot_ids))
    for i in range(0, len(ids), _BATCH):
        first = (
            select(func.min(TagHistory.id))
            .where(TagHistory.model_id == model_id, TagHistory.new_snapshot_id.in_(ids[i : i + _BATCH]))
            .group_by(TagHistory.new_snapshot_id)
        )
        for snap_id, tag in s.execute(
            select(TagHistory.new_snapshot_id, TagHistory.tag).where(TagHistory.id.in_(first))
        ):
            out[snap_id] = tag
    return out
