"""Searching snapshots by provenance, and answering "as the catalog stood on a date".

Cutoff semantics: a cutoff is stored as the first day of its period with a precision (year, month, day). A cutoff
is *before* a date D when the whole period ends before D (``2023`` is before 2024-01-01, not before 2023-06-01),
and *after* D when the whole period starts after D (``2023-05`` is after 2023-04-30, not after 2023-05-15). Both
are exact for day precision and never claim more than the precision allows.

``as_of``: snapshots pushed by then, tags as they pointed then (from tag history), withdrawals that had happened
by then, datasets attached by then, and lineage edges recorded by then (an edge to a parent the catalog lacked at
the child's first recording is recorded later, when the parent arrives: ``Lineage.created_at``). Pages are small
(``limit``, newest first) and every per-row lookup (tags) is one query for the whole page, so time grows with the
page, not with the catalog.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import ColumnElement, Select, Text, and_, bindparam, cast, func, or_, select
from sqlalchemy.orm import Session, aliased

from modelarc.errors import UsageError
from modelarc.registry.bounds import CATALOG_INT_MAX
from modelarc.registry.models import (
    DataAttachment,
    Dataset,
    Lineage,
    Model,
    Snapshot,
    SnapshotDataset,
    Tag,
    TagHistory,
)
from modelarc.registry.refs import SnapshotId

MAX_FILTER_INT = CATALOG_INT_MAX


@dataclass(frozen=True)
class SnapshotFilters:
    cutoff_before: dt.date | None = None
    cutoff_after: dt.date | None = None
    arch: str | None = None
    min_params: int | None = None
    max_params: int | None = None
    trained_on: str | None = None
    license: str | None = None
    descendant_of: int | None = None  # snapshot row id
    as_of: dt.datetime | None = None
    name: str | None = None  # part of "namespace/name", any case
    # a direct parent is a snapshot of this model, (namespace, name), declared with ``parent_relation`` when given
    parent_model: tuple[str, str] | None = None
    parent_relation: str | None = None  # finetune, quantized, merge, ...
    limit: int | None = 100
    offset: int = 0  # rows to skip (API pagination)

    def __post_init__(self) -> None:
        """Every integer fits the catalog's signed 64-bit columns: beyond, SQLite raises OverflowError (a 500)."""
        for field in ("min_params", "max_params", "limit", "offset"):
            value = getattr(self, field)
            if value is not None and not 0 <= value <= MAX_FILTER_INT:
                raise UsageError(f"{field} must be between 0 and {MAX_FILTER_INT}")


@dataclass(frozen=True)
class SnapshotSummary:
    """A row of ``modelarc ls`` and ``GET /v1/snapshots``."""

    model: str
    snapshot: SnapshotId
    tags: tuple[str, ...]
    created_at: str
    parameters: int
    logical_bytes: int
    model_type: str | None
    cutoff: str | None
    cutoff_precision: str | None
    release_date: str | None
    license: str | None
    withdrawn: bool
    withdrawn_reason: str | None

    def to_json(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "tags": list(self.tags)}

    @classmethod
    def from_json(cls, doc: Any) -> SnapshotSummary:
        """A row another archive sent (``modelarc ls --remote``); ``UsageError`` if it is not shaped like one."""
        names = [f.name for f in fields(cls)]
        if not isinstance(doc, dict) or not all(n in doc for n in names) or not isinstance(doc["tags"], list):
            raise UsageError(f"a snapshot row needs {', '.join(names)}")
        # exact JSON types: a true read as 1 parameter, or "7B" as a count, would be a wrong row or a traceback later
        wrong = [
            n
            for n in names
            if n in _SUMMARY_TYPES
            and not (type(doc[n]) is _SUMMARY_TYPES[n] or (doc[n] is None and n in _SUMMARY_OPTIONAL))
        ]
        if wrong or not all(type(t) is str for t in doc["tags"]):
            raise UsageError(f"a snapshot row has {', '.join(wrong) or 'tags'} of the wrong JSON type")
        return cls(
            **{
                **{n: doc[n] for n in names},
                "snapshot": SnapshotId(doc["snapshot"]),
                "tags": tuple(doc["tags"]),
            }
        )


# the JSON type of each field of a SnapshotSummary another archive sends (``snapshot`` and ``tags`` are checked apart)
_SUMMARY_TYPES: dict[str, type] = {
    "model": str, "created_at": str, "parameters": int, "logical_bytes": int, "withdrawn": bool, "model_type": str,
    "cutoff": str, "cutoff_precision": str, "release_date": str, "license": str, "withdrawn_reason": str,
}  # fmt: skip
_SUMMARY_OPTIONAL = frozenset(
    {"model_type", "cutoff", "cutoff_precision", "release_date", "license", "withdrawn_reason"}
)


def _cutoff_end_before(d: dt.date) -> ColumnElement[bool]:
    """The cutoff's whole period lies before ``d``: day ``c < d``; month and year ``c`` < the start of d's period."""
    return or_(
        and_(
            or_(Snapshot.cutoff_precision == "day", Snapshot.cutoff_precision.is_(None)), Snapshot.cutoff < d
        ),
        and_(Snapshot.cutoff_precision == "month", Snapshot.cutoff < dt.date(d.year, d.month, 1)),
        and_(Snapshot.cutoff_precision == "year", Snapshot.cutoff < dt.date(d.year, 1, 1)),
    )


def _cutoff_start_after(d: dt.date) -> ColumnElement[bool]:
    """The cutoff's whole period lies after ``d``: its first day (what is stored) is after ``d``."""
    return Snapshot.cutoff > d


def _descendant_ids(root: int, as_of: dt.datetime | None) -> Select:  # type: ignore[type-arg]
    """Row ids of the snapshots below ``root`` by the edges recorded by ``as_of`` (all, when None), never ``root``.

    UNION (not UNION ALL) drops a row already in the tree, so the recursion ends even on a cycle an older
    modelarc recorded; on such a catalog the root would be its own descendant, which it is not listed as.
    """
    first = select(Lineage.child_id.label("id")).where(Lineage.parent_id == root)
    if as_of is not None:
        first = first.where(Lineage.created_at <= as_of)
    tree = first.cte("descendants", recursive=True)
    step = aliased(Lineage)
    more = select(step.child_id).join(tree, step.parent_id == tree.c.id)
    if as_of is not None:
        more = more.where(step.created_at <= as_of)
    tree = tree.union(more)
    return select(tree.c.id).where(tree.c.id != root)


def _children_of_model(namespace: str, name: str, relation: str | None, as_of: dt.datetime | None) -> Select:  # type: ignore[type-arg]
    """Snapshots that declare a snapshot of model ``namespace/name`` as a direct parent (by ``relation``), by an
    edge recorded by ``as_of`` (any, when None)."""
    parent = aliased(Snapshot)
    parent_model = aliased(Model)
    q = (
        select(Lineage.child_id)
        .join(parent, parent.id == Lineage.parent_id)
        .join(parent_model, parent_model.id == parent.model_id)
        .where(parent_model.namespace == namespace, parent_model.name == name)
    )
    if as_of is not None:
        q = q.where(Lineage.created_at <= as_of)
    return q.where(Lineage.relation == relation) if relation is not None else q


def snapshot_conditions(f: SnapshotFilters) -> list[ColumnElement[bool]]:
    """The WHERE conditions ``f`` puts on ``Snapshot`` (and ``Model``, for ``name``), for any query that joins both.

    Shared by the snapshot search below and the Hub model listing (registry/model_heads.py), so a filter means the
    same on every surface.
    """
    out: list[ColumnElement[bool]] = []
    if f.as_of is not None:
        out.append(Snapshot.created_at <= f.as_of)
    if f.cutoff_before is not None:
        out += [Snapshot.cutoff.is_not(None), _cutoff_end_before(f.cutoff_before)]
    if f.cutoff_after is not None:
        out += [Snapshot.cutoff.is_not(None), _cutoff_start_after(f.cutoff_after)]
    if f.name:
        # autoescape: % and _ in the text are matched as themselves, not as LIKE wildcards ("contains this")
        out.append(func.lower(Model.namespace + "/" + Model.name).contains(f.name.lower(), autoescape=True))
    if f.arch:
        out.append(
            or_(
                func.lower(Snapshot.model_type) == f.arch.lower(),
                func.lower(cast(Snapshot.architecture, Text)).contains(f.arch.lower(), autoescape=True),
            )
        )
    if f.min_params is not None:
        out.append(Snapshot.parameter_count >= f.min_params)
    if f.max_params is not None:
        out.append(Snapshot.parameter_count <= f.max_params)
    if f.license:
        # the same expression as the index ix_snapshots_license_created, which serves it in created_at order
        out.append(func.lower(Snapshot.license) == f.license.lower())
    if f.trained_on:
        # dataset names are identifiers: an exact match can use the name index
        used = (
            select(SnapshotDataset.snapshot_id)
            .join(Dataset, Dataset.id == SnapshotDataset.dataset_id)
            .where(Dataset.name == f.trained_on)
        )
        if f.as_of is not None:
            used = used.join(DataAttachment, DataAttachment.id == SnapshotDataset.attachment_id).where(
                DataAttachment.attached_at <= f.as_of
            )
        out.append(Snapshot.id.in_(used))
    if f.descendant_of is not None:
        out.append(Snapshot.id.in_(_descendant_ids(f.descendant_of, f.as_of)))
    if f.parent_model is not None:
        out.append(Snapshot.id.in_(_children_of_model(*f.parent_model, f.parent_relation, f.as_of)))
    return out


# What a row of the listing needs, as plain columns: loading whole ORM rows (and parsing their JSON columns) cost
# more than the query itself on a page of 100.
_ROW = (
    Snapshot.id,
    Snapshot.digest,
    Snapshot.created_at,
    Snapshot.parameter_count,
    Snapshot.logical_bytes,
    Snapshot.model_type,
    Snapshot.cutoff,
    Snapshot.cutoff_precision,
    Snapshot.release_date,
    Snapshot.license,
    Snapshot.tombstoned_at,
    Snapshot.tombstone_reason,
    Model.namespace,
    Model.name,
)


def search(s: Session, f: SnapshotFilters, *, order: str = "newest") -> list[SnapshotSummary]:
    q = select(*_ROW).join(Model, Model.id == Snapshot.model_id).where(*snapshot_conditions(f))
    if order == "cutoff":
        # known cutoffs in index order first, then unknown ones: two index-friendly queries instead of sorting
        # every row on "cutoff IS NULL"; an offset is applied to the concatenation
        want = None if f.limit is None else min(f.limit + f.offset, MAX_FILTER_INT)
        known = q.where(Snapshot.cutoff.is_not(None)).order_by(
            Snapshot.cutoff, Snapshot.release_date, Snapshot.id
        )
        rows = list(s.execute(known.limit(want) if want is not None else known).all())
        room = None if want is None else want - len(rows)
        if room is None or room > 0:
            unknown = q.where(Snapshot.cutoff.is_(None)).order_by(Snapshot.release_date, Snapshot.id)
            rows += s.execute(unknown.limit(room) if room is not None else unknown).all()
        rows = rows[f.offset :]
    else:
        q = q.order_by(Snapshot.created_at.desc(), Snapshot.id.desc()).offset(f.offset or None)
        rows = list(s.execute(q.limit(f.limit) if f.limit is not None else q).all())
    tags = _tags(s, [row[0] for row in rows], f.as_of)
    return [_summary(*tuple(row), tags=tags, as_of=f.as_of) for row in rows]


def _summary(
    row_id: int,
    digest: str,
    created_at: dt.datetime,
    parameter_count: int,
    logical_bytes: int,
    model_type: str | None,
    cutoff: dt.date | None,
    cutoff_precision: str | None,
    release_date: dt.date | None,
    license: str | None,
    tombstoned_at: dt.datetime | None,
    tombstone_reason: str | None,
    namespace: str,
    name: str,
    *,
    tags: dict[int, list[str]],
    as_of: dt.datetime | None,
) -> SnapshotSummary:
    """A row of the columns in ``_ROW``, in their order (unpacked: reading a Row's fields by name costs more)."""
    withdrawn = tombstoned_at is not None and (as_of is None or tombstoned_at <= as_of)
    return SnapshotSummary(
        model=f"{namespace}/{name}",
        snapshot=SnapshotId(digest),
        tags=tuple(tags.get(row_id, ())),
        created_at=created_at.isoformat(timespec="seconds"),
        parameters=parameter_count,
        logical_bytes=logical_bytes,
        model_type=model_type,
        cutoff=format_cutoff_value(cutoff, cutoff_precision),
        cutoff_precision=cutoff_precision,
        release_date=release_date.isoformat() if release_date else None,
        license=license,
        withdrawn=withdrawn,
        withdrawn_reason=tombstone_reason if withdrawn else None,
    )


def format_cutoff_value(d: dt.date | None, precision: str | None) -> str | None:
    if d is None:
        return None
    text = d.isoformat()
    return {"year": text[:4], "month": text[:7]}.get(precision or "day", text)


# The ids are bound when the statement runs: `in_(ids)` would check each of a page's ids as the statement is built.
_PAGE_TAGS = (
    select(Tag.snapshot_id, Tag.name)
    .where(Tag.snapshot_id.in_(bindparam("ids", expanding=True)))
    .order_by(Tag.name)
)


def _tags(s: Session, ids: list[int], as_of: dt.datetime | None) -> dict[int, list[str]]:
    """Tags of a page of snapshots in one query; as of a date, replayed from the tag history."""
    out: dict[int, list[str]] = {}
    if not ids:
        return out
    if as_of is None:
        for snap_id, name in s.execute(_PAGE_TAGS, {"ids": ids}):
            out.setdefault(snap_id, []).append(name)
        return out
    # moves onto this page's snapshots that no later move (by then) of the same tag superseded
    later = aliased(TagHistory)
    superseded = (
        select(later.id)
        .where(later.model_id == TagHistory.model_id, later.tag == TagHistory.tag, later.id > TagHistory.id)
        .where(later.moved_at <= as_of)
        .exists()
    )
    rows = s.execute(
        select(TagHistory.tag, TagHistory.new_snapshot_id)
        .where(
            TagHistory.new_snapshot_id.in_(bindparam("ids", expanding=True)),
            TagHistory.moved_at <= as_of,
            ~superseded,
        )
        .order_by(TagHistory.tag),
        {"ids": ids},
    ).all()
    for tag, snap_id in rows:
        out.setdefault(snap_id, []).append(tag)
    return out
