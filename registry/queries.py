"""Reads and writes of the catalog, each taking the caller's session (one session = one unit of work)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, delete, func, insert, select, text
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.attributes import set_committed_value

from modelarc.errors import (
    AmbiguousRefError,
    ModelNameClashError,
    ModelNotFoundError,
    SnapshotNotFoundError,
    TagNotFoundError,
    UsageError,
)
from modelarc.registry.models import (
    AuditEvent,
    DataAttachment,
    File,
    Lineage,
    Model,
    Snapshot,
    Tag,
    TagHistory,
    TensorRow,
    utcnow,
)
from modelarc.registry.refs import Ref, SnapshotId
from modelarc.registry.snapshots import SnapshotRecord, snapshot_record
from modelarc.registry.store_models import SnapshotObject, StoredObject

if TYPE_CHECKING:  # annotations only: a pull or a show needs none of the values a push records
    from modelarc.registry.records import NewSnapshot, ObjectRecord


@dataclass(frozen=True)
class ModelRecord:
    """A model as values: its catalog key (``row_id``, for later queries about it) and its name."""

    row_id: int
    namespace: str
    name: str
    created_at: dt.datetime | None = None  # when its first snapshot was recorded

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


def _model_row(s: Session, namespace: str, name: str) -> Model | None:
    return s.scalar(select(Model).where(Model.namespace == namespace, Model.name == name))


# Names are ASCII (registry/refs.py), so lower() means the same on SQLite and PostgreSQL; the expression index
# ix_models_lower_name (migration 0016) serves both lookups below. It is not UNIQUE: archives made before the rule
# may hold such pairs, and both keep working under their exact spelling.
def spelled_otherwise(s: Session, namespace: str, name: str, limit: int = 3) -> list[str]:
    """The models whose name equals ``namespace/name`` but for case (never that exact spelling), oldest first."""
    rows = s.execute(
        select(Model.namespace, Model.name)
        .where(func.lower(Model.namespace) == namespace.lower(), func.lower(Model.name) == name.lower())
        .order_by(Model.id)
        .limit(limit + 1)
    ).all()
    return [f"{ns}/{n}" for ns, n in rows if (ns, n) != (namespace, name)][:limit]


def model_not_found(s: Session, namespace: str, name: str, message: str | None = None) -> ModelNotFoundError:
    """The error for a model name that names none, saying "did you mean" when one is spelled so in another case."""
    message = message or f"no model {namespace}/{name} in the archive"
    if similar := spelled_otherwise(s, namespace, name):
        message += f"; did you mean {' or '.join(similar)}?"
    return ModelNotFoundError(message)


@dataclass(frozen=True)
class NameClash:
    """The existing spelling that a new model's name equals but for case: a model's ``ns/name``, or a namespace."""

    existing: str
    namespace_only: bool  # the namespace clashes (the model name is new in any case)

    def refusal(self, namespace: str, name: str) -> str:
        """The one-line refusal of creating ``namespace/name``, naming the spelling this archive has."""
        if self.namespace_only:
            return (
                f"model {namespace}/{name} is refused: this archive has namespace {self.existing}, which differs "
                f"only in case (push as {self.existing}/{name})"
            )
        return (
            f"model {namespace}/{name} is refused: this archive has {self.existing}, which differs only in case "
            "(model names are compared ignoring case)"
        )


def name_clash(s: Session, namespace: str, name: str) -> NameClash | None:
    """What a new model ``namespace/name`` would clash with here; None if nothing, or if the model exists.

    Refused: a name equal to an existing model's but for case, and a namespace new to this archive that an
    existing one equals but for case (docs/SECURITY.md, "Lookalike model names"). A namespace already spelled
    exactly so takes new models (an archive from before this rule may hold ``acme`` and ``Acme`` both).
    """
    if _model_row(s, namespace, name) is not None:
        return None
    if similar := spelled_otherwise(s, namespace, name, limit=1):
        return NameClash(similar[0], namespace_only=False)
    spelled = namespace_spelled_otherwise(s, namespace)
    return None if spelled is None else NameClash(spelled, namespace_only=True)


def namespace_spelled_otherwise(s: Session, namespace: str) -> str | None:
    """How this archive spells ``namespace`` if no model has it spelled exactly so but one has it in another case
    (the oldest such spelling); None if it is spelled so here, or is new in every case."""
    if s.scalar(select(Model.id).where(Model.namespace == namespace).limit(1)) is not None:
        return None
    return s.scalar(
        select(Model.namespace)
        .where(func.lower(Model.namespace) == namespace.lower())
        .order_by(Model.id)
        .limit(1)
    )


def refuse_name_clash(s: Session, namespace: str, name: str) -> None:
    """``ModelNameClashError`` if a new model ``namespace/name`` may not be created here (``name_clash``); callers
    run it before the work a refusal would waste (reading a source, receiving weights), as the recording does."""
    if (clash := name_clash(s, namespace, name)) is not None:
        raise ModelNameClashError(clash.refusal(namespace, name))


def find_model(s: Session, namespace: str, name: str) -> ModelRecord | None:
    row = _model_row(s, namespace, name)
    return None if row is None else ModelRecord(row.id, row.namespace, row.name, row.created_at)


def require_model(s: Session, namespace: str, name: str) -> ModelRecord:
    model = find_model(s, namespace, name)
    if model is None:
        raise model_not_found(s, namespace, name)
    return model


def get_or_create_model(
    s: Session, namespace: str, name: str, at: dt.datetime | None = None, *, lookalike_allowed: bool = False
) -> Model:
    """The model's row (registry-internal: the recording transaction adds rows that point at it).

    A new model whose name ``name_clash`` refuses raises ``ModelNameClashError``, unless ``lookalike_allowed``
    (a catalog rebuilt from the store's records, which may hold a pair recorded before the rule).
    """
    model = _model_row(s, namespace, name)
    if model is None:
        if _serialise_names(s, namespace):  # another transaction may have created it meanwhile
            model = _model_row(s, namespace, name)
    if model is None:
        if not lookalike_allowed:
            refuse_name_clash(s, namespace, name)
        model = Model(namespace=namespace, name=name, created_at=at or utcnow())
        s.add(model)
        s.flush()
    return model


def _serialise_names(s: Session, namespace: str) -> bool:
    """Make the creation of models in ``namespace`` (in any case) one transaction at a time, held until this one
    ends; True if it may have waited for another. The clash check and the insert are two statements, and the
    index on lower(namespace), lower(name) is not UNIQUE (archives from before the rule may hold a pair), so two
    servers creating `acme/x` and `Acme/x` at once could both succeed. Under READ COMMITTED the statements after
    the lock see what the transaction that held it committed. SQLite has one writer at a time, but its reads
    before the first write of a transaction see no other's uncommitted insert and wait for nothing: a write that
    changes no row takes the database's write lock first (as registry/store_locks.py does)."""
    if s.get_bind().dialect.name == "sqlite":
        s.execute(text("UPDATE models SET id = id WHERE 0"))
        return True
    if s.get_bind().dialect.name != "postgresql":
        return False
    digest = hashlib.sha256(b"modelarc.model-names:" + namespace.lower().encode()).digest()
    s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(digest[:8], "big", signed=True)})
    return True


def lock_model(s: Session, model_id: int) -> None:
    """Changes to one model take turns from here until this transaction ends: a row lock on the model on
    PostgreSQL; on SQLite the database's write lock (a write that changes no row), since its reads before the first
    write of a transaction wait for nothing. What a change reads after it (archive/left_records.py: whether another
    run committed the record it finds) is what the run before it committed."""
    if s.get_bind().dialect.name == "sqlite":
        s.execute(text("UPDATE models SET id = id WHERE 0"))
        return
    s.execute(select(Model.id).where(Model.id == model_id).with_for_update())


def tag_move_times(s: Session, model_id: int, tag: str) -> list[dt.datetime]:
    """When each move of ``tag`` of the model was made, as the catalog's history holds them."""
    rows = s.scalars(select(TagHistory.moved_at).where(TagHistory.model_id == model_id, TagHistory.tag == tag))
    return list(rows)


def resolve_ref(s: Session, ref: Ref) -> Snapshot:
    """The snapshot row a REF names; a digest prefix must be unique within the model.

    Registry-internal (rows are added that point at it); above registry/, ``resolve_snapshot`` hands out values.
    """
    model = _model_row(s, ref.namespace, ref.name)
    if model is None:
        raise model_not_found(s, ref.namespace, ref.name)
    if ref.digest:
        rows = s.scalars(
            select(Snapshot)
            .where(Snapshot.model_id == model.id, Snapshot.digest.startswith(ref.digest))
            .limit(2)
        ).all()
        if not rows:
            raise SnapshotNotFoundError(f"no snapshot {ref.digest} in {ref.model}")
        if len(rows) > 1:
            raise AmbiguousRefError(
                f"{ref.digest} matches several snapshots of {ref.model}; give more digits"
            )
        snap = rows[0]
    else:
        # the tag's snapshot in one statement, not the tag and then its snapshot (issue 12: a statement is compiled
        # afresh in every process)
        found = s.scalar(
            select(Snapshot)
            .join(Tag, Tag.snapshot_id == Snapshot.id)
            .where(Tag.model_id == model.id, Tag.name == ref.tag)
        )
        if found is None:
            raise TagNotFoundError(f"no tag {ref.tag!r} on {ref.model}")
        snap = found
    # Callers read snap.model (snapshot_record): set it, as loaded, from the row in hand. The session holds rows
    # weakly, so once ``model`` went out of scope that lazy load would select the model a second time.
    set_committed_value(snap, "model", model)
    return snap


def resolve_snapshot(s: Session, ref: Ref) -> SnapshotRecord:
    """``resolve_ref``, as values the caller may keep after the session ends."""
    return snapshot_record(resolve_ref(s, ref))


def digest_recorded(s: Session, digest: SnapshotId) -> bool:
    """Whether any model already holds a snapshot with this id (its content was checked when it was recorded)."""
    return s.scalar(select(Snapshot.id).where(Snapshot.digest == digest).limit(1)) is not None


def digest_withdrawn(s: Session, digest: SnapshotId) -> bool:
    """Whether some model holds a snapshot with this id that was withdrawn (its weights taken out of the archive)."""
    return (
        s.scalar(
            select(Snapshot.id).where(Snapshot.digest == digest, Snapshot.tombstoned_at.is_not(None)).limit(1)
        )
        is not None
    )


def withdrawn_among(s: Session, snapshot_row_ids: Iterable[int]) -> set[int]:
    """Those of the snapshot rows that are withdrawn."""
    ids = sorted(set(snapshot_row_ids))
    if not ids:
        return set()
    return set(s.scalars(select(Snapshot.id).where(Snapshot.id.in_(ids), Snapshot.tombstoned_at.is_not(None))))


def withdrawn_snapshots(s: Session) -> list[SnapshotRecord]:
    """Every withdrawn snapshot, oldest withdrawal first (gc releases their weights again: archive/weights.py)."""
    rows = s.scalars(select(Snapshot).where(Snapshot.tombstoned_at.is_not(None)).order_by(Snapshot.id))
    return [snapshot_record(row) for row in rows]


def withdrawn_with_digest(s: Session, digest: SnapshotId) -> Snapshot | None:
    """A withdrawn snapshot with this id, under any model (its weights are the same whichever model holds it)."""
    return s.scalar(
        select(Snapshot)
        .where(Snapshot.digest == digest, Snapshot.tombstoned_at.is_not(None))
        .order_by(Snapshot.tombstoned_at)
        .limit(1)
    )


def withdrawn_in_model(s: Session, namespace: str, name: str, digest: SnapshotId) -> SnapshotRecord | None:
    """The snapshot ``digest`` of model ``namespace/name`` if that model holds it withdrawn, else None."""
    row = s.scalar(
        select(Snapshot)
        .join(Model, Model.id == Snapshot.model_id)
        .where(
            Model.namespace == namespace,
            Model.name == name,
            Snapshot.digest == digest,
            Snapshot.tombstoned_at.is_not(None),
        )
    )
    return None if row is None else snapshot_record(row)


def known_object_ids(s: Session, ids: Iterable[str]) -> set[str]:
    """Which of ``ids`` the catalog already has rows for (queried in batches to stay under bind limits)."""
    wanted = list(ids)
    known: set[str] = set()
    for i in range(0, len(wanted), 500):
        known.update(s.scalars(select(StoredObject.id).where(StoredObject.id.in_(wanted[i : i + 500]))))
    return known


def record_objects(s: Session, objects: Iterable[ObjectRecord]) -> None:
    """Insert rows for objects not yet catalogued; call only after the objects are durable in the store.

    Two recordings at once (two servers on one PostgreSQL) may both find a shared new object uncatalogued: the
    second insert then waits for the first transaction and skips the row (ON CONFLICT DO NOTHING) instead of
    failing the whole commit with a duplicate key.
    """
    todo = {o.id: o for o in objects}
    if not todo:
        return
    known = known_object_ids(s, todo)
    rows = [
        {
            "id": o.id,
            "raw_size": o.raw_size,
            "stored_size": o.stored_size,
            "codec": o.codec,
            "created_at": utcnow(),
            "delta_base": o.delta_base,
            "standalone_size": o.standalone_size,
        }
        for oid, o in todo.items()
        if oid not in known
    ]
    if rows:
        s.flush()  # rows added earlier in this session reach the database before these
        s.execute(_insert_skipping_known(s, StoredObject), rows)


def _insert_skipping_known(s: Session, model: type[StoredObject]) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` in the dialect of the session's database (PostgreSQL or SQLite)."""
    if s.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(model).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(model).on_conflict_do_nothing()


def refuse_repeated_parents(parents: Sequence[tuple[Snapshot, str]]) -> None:
    """One lineage edge per parent: a snapshot named twice (the same ref twice, or two refs to one snapshot, from
    the CLI or in a remote's offer) was the database's unique-constraint error, a traceback, after the objects
    were written."""
    seen: set[int] = set()
    for parent, _relation in parents:
        if parent.id in seen:
            raise UsageError(
                f"parent {parent.model.full_name}@{parent.digest} is named twice (two refs to one snapshot); "
                "name each parent once"
            )
        seen.add(parent.id)


def record_snapshot(
    s: Session,
    model: Model,
    new: NewSnapshot,
    parents: Sequence[tuple[Snapshot, str]],
    at: dt.datetime | None = None,
) -> tuple[Snapshot, bool]:
    """Add the snapshot unless this model already has it; returns (row, created). ``at`` is its creation time
    (default now; a catalog rebuilt from the store's records gives the original one)."""
    existing = s.scalar(select(Snapshot).where(Snapshot.model_id == model.id, Snapshot.digest == new.digest))
    if existing is not None:
        return existing, False
    refuse_repeated_parents(parents)
    p = new.provenance
    arch = new.architecture
    snap = Snapshot(
        model_id=model.id,
        digest=new.digest,
        created_at=at or utcnow(),
        logical_bytes=new.logical_bytes,
        stored_bytes_added=new.stored_bytes_added,
        file_count=len(new.files),
        tensor_count=sum(len(f.tensors) for f in new.files),
        parameter_count=new.parameter_count,
        dtypes=dict(new.dtypes),
        architecture=dict(arch),
        model_type=arch.get("model_type"),
        cutoff=p.cutoff,
        cutoff_precision=p.cutoff_precision,
        license=p.license,
        description=p.description,
        source_url=p.source_url,
        release_date=p.release_date,
        pushed_by=new.pushed_by,
    )
    s.add(snap)
    s.flush()
    # Files, tensors and object references as bulk INSERTs (executemany; the files' ids come back with RETURNING,
    # in the order given), not one ORM object and one flush per file: the unit of work cost ~30 ms of a
    # MiniLM-sized push (13 files, 104 tensors). These rows are not in the session; reading them loads them.
    if new.files:
        file_ids = s.scalars(
            insert(File).returning(File.id, sort_by_parameter_order=True),
            [
                {"snapshot_id": snap.id, "path": f.path, "size": f.size, "sha256": f.sha256, "kind": f.kind}
                for f in new.files
            ],
        ).all()
        tensors = [
            {
                "file_id": file_id,
                "name": t.name,
                "dtype": t.dtype,
                "shape": list(t.shape),
                "offset": t.offset,
                "length": t.length,
                "digest": t.digest,
            }
            for file_id, f in zip(file_ids, new.files, strict=True)
            for t in f.tensors
        ]
        if tensors:
            s.execute(insert(TensorRow), tensors)
    references = [
        {"snapshot_id": snap.id, "object_id": oid, "as_base": False} for oid in sorted(new.object_ids)
    ]
    references += [
        {"snapshot_id": snap.id, "object_id": oid, "as_base": True}
        for oid in sorted(new.base_object_ids - new.object_ids)
    ]
    if references:
        s.execute(insert(SnapshotObject), references)
    for parent, relation in parents:
        s.add(Lineage(child_id=snap.id, parent_id=parent.id, relation=relation, created_at=snap.created_at))
    s.flush()
    return snap, True


def add_snapshot_objects(
    s: Session, snapshot_id: int, object_ids: Iterable[str], base_object_ids: Iterable[str] = ()
) -> None:
    """The snapshot with row id ``snapshot_id`` references these objects too (gc keeps them), and keeps
    ``base_object_ids`` as the bases of its delta objects."""
    have = set(s.scalars(select(SnapshotObject.object_id).where(SnapshotObject.snapshot_id == snapshot_id)))
    content = set(object_ids)
    s.add_all(SnapshotObject(snapshot_id=snapshot_id, object_id=o) for o in content - have)
    s.add_all(
        SnapshotObject(snapshot_id=snapshot_id, object_id=o, as_base=True)
        for o in set(base_object_ids) - content - have
    )
    s.flush()


def move_tag(
    s: Session, model: Model, tag_name: str, snap: Snapshot, actor: str, at: dt.datetime | None = None
) -> str | None:
    """Point ``tag_name`` at ``snap`` (at time ``at``, default now); returns the digest it pointed at before (None
    if new)."""
    at = at or utcnow()
    tag = s.scalar(select(Tag).where(Tag.model_id == model.id, Tag.name == tag_name))
    old_digest = None
    if tag is None:
        tag = Tag(model_id=model.id, name=tag_name, snapshot_id=snap.id, updated_at=at)
        s.add(tag)
        old_id = None
    else:
        old_id = tag.snapshot_id
        old_digest = tag.snapshot.digest
        if old_id == snap.id:
            return old_digest
        tag.snapshot_id = snap.id
        tag.updated_at = at
    s.add(
        TagHistory(
            model_id=model.id,
            tag=tag_name,
            old_snapshot_id=old_id,
            new_snapshot_id=snap.id,
            moved_at=at,
            actor=actor,
        )
    )
    s.flush()
    return old_digest


@dataclass(frozen=True)
class TagChange:
    """What ``tag_snapshot`` did: the snapshot the tag names now, and the one it named before (None if new)."""

    snapshot: SnapshotId
    previous: str | None  # the same as ``snapshot`` when the tag already pointed there


def tag_snapshot(s: Session, ref: Ref, tag_name: str, actor: str, at: dt.datetime | None = None) -> TagChange:
    """Point the tag ``tag_name`` of ``ref``'s model at the snapshot ``ref`` names; the move is kept in the history."""
    snap = resolve_ref(s, ref)
    previous = move_tag(s, snap.model, tag_name, snap, actor, at)
    return TagChange(SnapshotId(snap.digest), previous)


def audit(
    s: Session, actor: str, action: str, target: str, *, at: dt.datetime | None = None, **details: Any
) -> None:
    s.add(AuditEvent(at=at or utcnow(), actor=actor, action=action, target=target, details=details))


def tags_by_snapshot(s: Session, snapshot_ids: Sequence[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    if snapshot_ids:
        for tag in s.scalars(select(Tag).where(Tag.snapshot_id.in_(snapshot_ids)).order_by(Tag.name)):
            out.setdefault(tag.snapshot_id, []).append(tag.name)
    return out


def list_snapshots(s: Session, model: ModelRecord | None = None) -> list[SnapshotRecord]:
    """Every snapshot (of ``model``, if given), newest first."""
    q = (
        select(Snapshot)
        .options(selectinload(Snapshot.model))
        .order_by(Snapshot.created_at.desc(), Snapshot.id.desc())
    )
    if model is not None:
        q = q.where(Snapshot.model_id == model.row_id)
    return [snapshot_record(row) for row in s.scalars(q)]


@dataclass(frozen=True)
class TagMoveRecord:
    """One move of a tag; the snapshots are named by their catalog keys (``SnapshotRecord.row_id``)."""

    tag: str
    old_snapshot_id: int | None  # None: the tag was new
    new_snapshot_id: int
    moved_at: dt.datetime
    actor: str | None


def tag_history(s: Session, model: ModelRecord) -> list[TagMoveRecord]:
    """Every tag move of ``model``, newest first."""
    rows = s.scalars(
        select(TagHistory).where(TagHistory.model_id == model.row_id).order_by(TagHistory.id.desc())
    )
    return [TagMoveRecord(h.tag, h.old_snapshot_id, h.new_snapshot_id, h.moved_at, h.actor) for h in rows]


def snapshot_digests(s: Session) -> set[str]:
    """The id (``sha256:<hex>``) of every snapshot the catalog holds, withdrawn ones too."""
    return set(s.scalars(select(Snapshot.digest).distinct()))


def referenced_object_ids(s: Session) -> set[str]:
    return set(s.scalars(select(SnapshotObject.object_id).distinct()))


def objects_in_use(s: Session, object_ids: Iterable[str]) -> set[str]:
    """Which of ``object_ids`` some snapshot still references."""
    ids = sorted(set(object_ids))
    used: set[str] = set()
    for i in range(0, len(ids), 500):
        used.update(
            s.scalars(select(SnapshotObject.object_id).where(SnapshotObject.object_id.in_(ids[i : i + 500])))
        )
    return used


def delta_object_ids(s: Session) -> set[str]:
    """Every catalogued object stored as a delta."""
    return set(s.scalars(select(StoredObject.id).where(StoredObject.delta_base.is_not(None))))


@dataclass(frozen=True)
class DeltaObject:
    id: str
    delta_base: str
    stored_size: int
    standalone_size: int | None


def delta_objects(s: Session, object_ids: Iterable[str]) -> list[DeltaObject]:
    """Those of ``object_ids`` stored as deltas, with their bases and sizes."""
    ids = sorted(set(object_ids))
    out: list[DeltaObject] = []
    for i in range(0, len(ids), 500):
        rows = s.execute(
            select(
                StoredObject.id,
                StoredObject.delta_base,
                StoredObject.stored_size,
                StoredObject.standalone_size,
            ).where(StoredObject.id.in_(ids[i : i + 500]), StoredObject.delta_base.is_not(None))
        )
        out.extend(DeltaObject(oid, str(base), int(size), alone) for oid, base, size, alone in rows)
    return out


def base_object_ids(s: Session, snapshot_id: int) -> set[str]:
    """The objects the snapshot keeps only as bases of its delta objects (archive/deltas.py)."""
    return set(
        s.scalars(
            select(SnapshotObject.object_id).where(
                SnapshotObject.snapshot_id == snapshot_id, SnapshotObject.as_base.is_(True)
            )
        )
    )


def snapshots_keeping_bases(s: Session) -> list[int]:
    """The row ids of the snapshots that keep some object as the base of one of their delta objects."""
    return sorted(
        set(s.scalars(select(SnapshotObject.snapshot_id).where(SnapshotObject.as_base.is_(True)).distinct()))
    )


def kept_as_bases(s: Session, object_ids: Iterable[str]) -> set[str]:
    """Which of ``object_ids`` some snapshot keeps as the base of a delta object."""
    ids = sorted(set(object_ids))
    used: set[str] = set()
    for i in range(0, len(ids), 500):
        used.update(
            s.scalars(
                select(SnapshotObject.object_id).where(
                    SnapshotObject.object_id.in_(ids[i : i + 500]), SnapshotObject.as_base.is_(True)
                )
            )
        )
    return used


def snapshot_object_ids(s: Session, snapshot_id: int) -> set[str]:
    """Every object the snapshot references now (its content, and bases it keeps for its delta objects)."""
    return set(s.scalars(select(SnapshotObject.object_id).where(SnapshotObject.snapshot_id == snapshot_id)))


def release_snapshot_objects(s: Session, snapshot_id: int, object_ids: Iterable[str]) -> None:
    """The snapshot no longer references these objects (its weights were withdrawn)."""
    ids = sorted(set(object_ids))
    for i in range(0, len(ids), 500):
        s.execute(
            delete(SnapshotObject).where(
                SnapshotObject.snapshot_id == snapshot_id, SnapshotObject.object_id.in_(ids[i : i + 500])
            )
        )


def data_manifest_object_ids(s: Session, snapshot_id: int) -> list[str]:
    """The training-data manifests attached to a snapshot, as stored objects, in the order they were attached."""
    return [
        str(oid)
        for oid in s.scalars(
            select(DataAttachment.object_id)
            .where(DataAttachment.snapshot_id == snapshot_id, DataAttachment.object_id.is_not(None))
            .order_by(DataAttachment.id)
        )
    ]


def snapshots_using(s: Session, object_ids: Iterable[str]) -> dict[str, list[SnapshotRecord]]:
    """The snapshots that reference each of ``object_ids`` (ids no snapshot references are left out)."""
    ids = list(set(object_ids))
    out: dict[str, list[SnapshotRecord]] = {}
    for i in range(0, len(ids), 500):
        rows = s.execute(
            select(SnapshotObject.object_id, Snapshot)
            .join(Snapshot, Snapshot.id == SnapshotObject.snapshot_id)
            .where(SnapshotObject.object_id.in_(ids[i : i + 500]))
            .options(selectinload(Snapshot.model))
        ).all()
        for oid, snap in rows:
            out.setdefault(oid, []).append(snapshot_record(snap))
    return out


@dataclass(frozen=True)
class CatalogStats:
    models: int
    snapshots: int
    logical_bytes: int
    objects: int
    unique_raw_bytes: int
    stored_bytes: int
    delta_objects: int = 0
    delta_raw_bytes: int = 0
    delta_stored_bytes: int = 0
    delta_standalone_bytes: int = 0  # of the deltas whose standalone size was measured when written
    delta_measured_stored_bytes: int = 0  # what those take
    delta_unmeasured: int = 0  # deltas received from elsewhere: their standalone size was never measured


def catalog_stats(s: Session) -> CatalogStats:
    models = s.scalar(select(func.count()).select_from(Model)) or 0
    snaps, logical = s.execute(select(func.count(), func.coalesce(func.sum(Snapshot.logical_bytes), 0))).one()
    objs, raw, stored = s.execute(
        select(
            func.count(),
            func.coalesce(func.sum(StoredObject.raw_size), 0),
            func.coalesce(func.sum(StoredObject.stored_size), 0),
        )
    ).one()
    measured = StoredObject.standalone_size.is_not(None)
    d = s.execute(
        select(
            func.count(),
            func.coalesce(func.sum(StoredObject.raw_size), 0),
            func.coalesce(func.sum(StoredObject.stored_size), 0),
            func.coalesce(func.sum(StoredObject.standalone_size), 0),
            func.coalesce(func.sum(case((measured, StoredObject.stored_size), else_=0)), 0),
            func.coalesce(func.sum(case((measured, 0), else_=1)), 0),
        ).where(StoredObject.delta_base.is_not(None))
    ).one()
    return CatalogStats(
        int(models), int(snaps), int(logical), int(objs), int(raw), int(stored), *(int(v) for v in d)
    )


def delete_object_rows(s: Session, object_ids: Iterable[str]) -> None:
    ids = list(object_ids)
    for i in range(0, len(ids), 500):
        for row in s.scalars(select(StoredObject).where(StoredObject.id.in_(ids[i : i + 500]))):
            s.delete(row)
    s.flush()


def tensor_rows(s: Session, snap: Snapshot) -> list[TensorRow]:
    return list(
        s.scalars(
            select(TensorRow)
            .join(File)
            .where(File.snapshot_id == snap.id)
            .order_by(File.path, TensorRow.offset)
        )
    )


@dataclass(frozen=True)
class AuditEntry:
    """One audit event as values; ``to_json`` is the entry of ``modelarc audit --json``."""

    at: dt.datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(timespec="seconds"),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "details": self.details,
        }


def audit_events(
    s: Session, *, action: str | None = None, since: dt.date | None = None, limit: int = 100
) -> list[AuditEntry]:
    """The newest events first (at most ``limit``), of ``action`` only and on or after ``since`` when given."""
    q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        q = q.where(AuditEvent.action == action)
    if since:
        q = q.where(AuditEvent.at >= dt.datetime.combine(since, dt.time()))
    return [AuditEntry(e.at, e.actor, e.action, e.target, dict(e.details)) for e in s.scalars(q)]


def audit_actions(s: Session) -> list[str]:
    """Every action the log holds, sorted: for a search that found none of the action it named."""
    return sorted(s.scalars(select(AuditEvent.action).distinct()))


def find_snapshot_by_digest(s: Session, digest: SnapshotId) -> Snapshot | None:
    """Any model's snapshot with this id (the bytes are the same whichever model holds it)."""
    return s.scalar(select(Snapshot).where(Snapshot.digest == digest).limit(1))
