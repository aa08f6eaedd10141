"""Models with their head snapshot, the way the Hugging Face Hub lists repositories: a page at a time.

A Hub repository shows its default branch; ours is the tag ``main`` when the model has one, else ``latest``
(``HEAD_TAGS``). Filters (registry/snapshot_search.py ``snapshot_conditions``) apply to that head snapshot, so a
model is listed under a filter exactly when the card it shows matches it. Sorting and paging happen in the query;
the facts a card needs about the page (parents, datasets) come from one query each for the whole page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session, aliased, selectinload

from modelarc.registry.models import Dataset, Lineage, Model, Snapshot, SnapshotDataset, Tag
from modelarc.registry.refs import SnapshotId
from modelarc.registry.snapshot_search import SnapshotFilters, snapshot_conditions
from modelarc.registry.snapshots import ParentLink, SnapshotRecord, snapshot_record

HEAD_TAGS = ("main", "latest")  # the first a model has is its default revision
ModelOrder = Literal["name", "created", "modified"]
_BATCH = 500  # ids per IN (...) list, under every backend's bind-parameter limit


@dataclass(frozen=True)
class ModelHead:
    """A model and the snapshot its default revision names now (None: neither ``main`` nor ``latest`` exists)."""

    model: str  # ns/name
    namespace: str
    created_at: dt.datetime
    head: SnapshotRecord | None


@dataclass(frozen=True)
class CardFacts:
    """What a model card says about one snapshot beyond its own row: declared parents and attached datasets."""

    parents: tuple[ParentLink, ...] = ()
    datasets: tuple[str, ...] = ()  # dataset names, in the order they were attached, each once


def list_model_heads(
    s: Session,
    filters: SnapshotFilters,
    *,
    author: str | None = None,
    order: ModelOrder = "name",
    descending: bool = True,
    limit: int = 100,
    offset: int = 0,
) -> list[ModelHead]:
    """One page of models whose head snapshot passes ``filters`` (every model when there is no filter).

    ``order``: ``name`` (namespace, name; ascending), ``created`` (when the model was first pushed) or
    ``modified`` (when its head snapshot was made; models without one last). Ties break on the model's row id.
    """
    head_tag, fallback_tag = aliased(Tag), aliased(Tag)
    q = (
        select(Model, Snapshot)
        .outerjoin(head_tag, and_(head_tag.model_id == Model.id, head_tag.name == HEAD_TAGS[0]))
        .outerjoin(fallback_tag, and_(fallback_tag.model_id == Model.id, fallback_tag.name == HEAD_TAGS[1]))
        .outerjoin(Snapshot, Snapshot.id == func.coalesce(head_tag.snapshot_id, fallback_tag.snapshot_id))
        .where(*snapshot_conditions(filters))
        .options(selectinload(Snapshot.model))
    )
    if author is not None:
        q = q.where(Model.namespace == author)
    if order == "name":
        q = q.order_by(Model.namespace, Model.name, Model.id)
    else:
        key = Model.created_at if order == "created" else Snapshot.created_at
        q = q.order_by(
            case((key.is_(None), 1), else_=0),  # unknown dates last in either direction
            key.desc() if descending else key.asc(),
            Model.id.desc() if descending else Model.id.asc(),
        )
    rows = s.execute(q.limit(limit).offset(offset or None)).all()
    return [
        ModelHead(
            model=model.full_name,
            namespace=model.namespace,
            created_at=model.created_at,
            head=snapshot_record(snap) if snap is not None else None,
        )
        for model, snap in rows
    ]


def card_facts(s: Session, snapshot_ids: Sequence[int]) -> dict[int, CardFacts]:
    """Parents and dataset names of each snapshot (by row id), in two queries per batch of ids."""
    parents: dict[int, list[ParentLink]] = {}
    datasets: dict[int, list[str]] = {}
    ids = list(dict.fromkeys(snapshot_ids))
    for i in range(0, len(ids), _BATCH):
        batch = ids[i : i + _BATCH]
        for child_id, relation, parent in s.execute(
            select(Lineage.child_id, Lineage.relation, Snapshot)
            .join(Snapshot, Snapshot.id == Lineage.parent_id)
            .where(Lineage.child_id.in_(batch))
            .options(selectinload(Snapshot.model))
            .order_by(Lineage.child_id, Snapshot.created_at, Snapshot.id)
        ):
            parents.setdefault(child_id, []).append(
                ParentLink(parent.model.full_name, SnapshotId(parent.digest), relation)
            )
        for snap_id, name in s.execute(
            select(SnapshotDataset.snapshot_id, Dataset.name)
            .join(Dataset, Dataset.id == SnapshotDataset.dataset_id)
            .where(SnapshotDataset.snapshot_id.in_(batch))
            .order_by(SnapshotDataset.id)
        ):
            names = datasets.setdefault(snap_id, [])
            if name not in names:
                names.append(name)
    return {
        sid: CardFacts(tuple(parents.get(sid, ())), tuple(datasets.get(sid, ())))
        for sid in ids
        if sid in parents or sid in datasets
    }
