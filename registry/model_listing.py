"""Listing models for browsing: one row per model with its snapshot count, newest push and tags, a page at a time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelarc.registry.models import Model, Snapshot, Tag


@dataclass(frozen=True)
class ModelSummary:
    model: str
    snapshots: int
    latest_push: str | None
    tags: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "snapshots": self.snapshots,
            "latest_push": self.latest_push,
            "tags": list(self.tags),
        }


def list_models(
    s: Session, *, name_contains: str | None = None, limit: int = 100, offset: int = 0
) -> list[ModelSummary]:
    """Models by name; counts and tags come from two grouped queries for the page, not one query per model."""
    q = select(Model).order_by(Model.namespace, Model.name, Model.id)
    if name_contains:
        # autoescape: % and _ in the text are matched as themselves, not as LIKE wildcards
        q = q.where(func.lower(Model.namespace + "/" + Model.name).contains(name_contains.lower(), autoescape=True))
    models = list(s.scalars(q.limit(limit).offset(offset)))
    ids = [m.id for m in models]
    if not ids:
        return []
    counts = {
        mid: (n, latest)
        for mid, n, latest in s.execute(
            select(Snapshot.model_id, func.count(Snapshot.id), func.max(Snapshot.created_at))
            .where(Snapshot.model_id.in_(ids))
            .group_by(Snapshot.model_id)
        )
    }
    tags: dict[int, list[str]] = {}
    for mid, name in s.execute(
        select(Tag.model_id, Tag.name).where(Tag.model_id.in_(ids)).order_by(Tag.name)
    ):
        tags.setdefault(mid, []).append(name)
    out = []
    for m in models:
        n, latest = counts.get(m.id, (0, None))
        out.append(
            ModelSummary(
                model=f"{m.namespace}/{m.name}",
                snapshots=int(n),
                latest_push=latest.isoformat(timespec="seconds") if latest else None,
                tags=tuple(tags.get(m.id, ())),
            )
        )
    return out
