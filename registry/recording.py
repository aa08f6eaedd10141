"""The one transaction that records a snapshot: objects, model, snapshot rows, lineage, signatures, tag and audit.

Local push and a received commit (server or puller) both end here, so what the catalog holds about a snapshot
never depends on how it arrived. The caller has made every object durable before calling; everything below is
committed together or not at all.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from modelarc.errors import LineageCycleError, NotFoundError, SigningKeyError, WithdrawnError
from modelarc.registry import lineage_queries as lq
from modelarc.registry import queries as q
from modelarc.registry.leases import release_leases
from modelarc.registry.models import Lineage, Signature, SigningKey, Snapshot, utcnow
from modelarc.registry.records import NewSnapshot, ObjectRecord
from modelarc.registry.refs import Ref, SnapshotId
from modelarc.registry.snapshots import ParentLink, unrecorded_parents_of


@dataclass(frozen=True)
class NewSignature:
    object_id: str  # the bundle, stored as an object
    bundle: str
    key_fingerprint: str  # a key already in the catalog (trusted, or this archive's own)
    at: dt.datetime | None = None  # when it was added: default the recording's time


@dataclass(frozen=True)
class SnapshotRecording:
    """Everything one recording needs; ``parents`` that this catalog lacks are an error unless ``lenient``."""

    model: Ref  # namespace and name; its tag (if any) is the one tag that moves
    snapshot: NewSnapshot
    objects: Sequence[ObjectRecord]
    signatures: Sequence[NewSignature]
    actor: str
    action: str  # the audit log's action: "push" or "transfer.commit"
    parents: Sequence[tuple[Ref, str]] = ()
    lenient_parents: bool = False  # a received snapshot may name parents this archive never saw
    merge_into_existing: bool = True  # a known snapshot still gains these signatures and objects
    release_leases_of: str | None = None  # the pusher whose leases on these objects end with this commit
    audit_details: dict[str, Any] = field(default_factory=dict)
    # a new model named like an existing one but for case is refused (``ModelNameClashError``), except in a
    # catalog rebuilt from the store's records: they may hold such a pair recorded before the rule, and both stay
    lookalike_allowed: bool = False
    # a new snapshot declaring a parent that a snapshot lacking it declared as its own parent (a cycle once that
    # declaration is recorded) is refused (``LineageCycleError``), except in a rebuilt catalog: its records may hold
    # such a pair written by an older modelarc, and there the later edge is left out (``parents_refused``) instead
    refuse_declared_cycles: bool = True
    # when it happened: every row it adds carries this time (default now). A catalog rebuilt from the store's
    # records (archive/rebuild.py) passes the original time, so the rebuilt rows say what the lost ones said.
    at: dt.datetime | None = None
    # a recording of a snapshot this model holds withdrawn is refused (``WithdrawnError``: ``refuse_withdrawn``),
    # except in a rebuilt catalog: an older modelarc recorded such re-pushes (a tag moved onto the withdrawn
    # snapshot), and the records say what the archive held
    refuse_withdrawn: bool = True


@dataclass(frozen=True)
class RecordedSnapshot:
    digest: str
    created: bool
    previous: str | None  # the snapshot the tag pointed at before, if it moved from another
    parents_missing: tuple[str, ...]
    parents: tuple[ParentLink, ...] = ()  # the declared parents this catalog has (recorded if ``created``)
    # of ``parents_missing``, those kept as the snapshot's unrecorded parents (``created`` only), and the edges to
    # unrecorded parents of a known snapshot that this recording found and added (``add_declared_lineage``)
    parents_unrecorded: tuple[ParentLink, ...] = ()
    parents_added: tuple[ParentLink, ...] = ()
    # declared unrecorded parents of a known snapshot whose edge was not added: it would have closed a cycle
    parents_refused: tuple[ParentLink, ...] = ()


def record_snapshot(s: Session, r: SnapshotRecording) -> RecordedSnapshot:
    """Record ``r`` in the caller's session (one transaction); see the module docstring."""
    if r.parents:  # before they are looked up (serialise_lineage_changes)
        serialise_lineage_changes(s)
    if r.refuse_withdrawn:
        refuse_withdrawn(s, r.model, r.snapshot.digest)
    at = r.at or utcnow()
    q.record_objects(s, r.objects)
    model = q.get_or_create_model(
        s, r.model.namespace, r.model.name, at, lookalike_allowed=r.lookalike_allowed
    )
    parents, missing, unrecorded = [], [], []
    for ref, relation in r.parents:
        try:
            parents.append((q.resolve_ref(s, ref), relation))
        except NotFoundError:
            if not r.lenient_parents:
                raise
            missing.append(str(ref))
            digest = ref.digest or ""
            if len(digest) == len(r.snapshot.digest):  # a whole snapshot id, not a prefix
                unrecorded.append(ParentLink(ref.model, SnapshotId(digest), relation))
    if r.refuse_declared_cycles:
        refuse_declared_cycle(s, r.model, r.snapshot.digest, parents)
    snap, created = q.record_snapshot(s, model, r.snapshot, parents, at)
    added: list[ParentLink] = []
    refused: list[ParentLink] = []
    if created and unrecorded:
        snap.unrecorded_parents = [link.to_json() for link in unrecorded]
    elif not created:
        unrecorded = []
        added, refused = add_declared_lineage(s, snap, parents, at)
    if created or r.merge_into_existing:
        have = set(s.scalars(select(Signature.object_id).where(Signature.snapshot_id == snap.id)))
        for sig in r.signatures:
            if sig.object_id in have:
                continue
            key = s.scalar(select(SigningKey).where(SigningKey.fingerprint == sig.key_fingerprint))
            if key is None:
                raise SigningKeyError(
                    f"signing key {sig.key_fingerprint} is not in the catalog; run `modelarc init`"
                )
            s.add(
                Signature(
                    snapshot_id=snap.id,
                    key_id=key.id,
                    object_id=sig.object_id,
                    bundle=sig.bundle,
                    created_at=sig.at or at,
                )
            )
    if not created and r.merge_into_existing:
        q.add_snapshot_objects(s, snap.id, r.snapshot.object_ids, r.snapshot.base_object_ids)
    tag = r.model.tag
    previous = q.move_tag(s, model, tag, snap, r.actor, at) if tag else None
    if r.release_leases_of is not None:
        release_leases(s, r.snapshot.object_ids | r.snapshot.base_object_ids, r.release_leases_of)
    label = f"{r.model.model}:{tag}" if tag else f"{r.model.model}@{snap.digest}"
    q.audit(
        s,
        r.actor,
        r.action,
        label,
        at=at,
        snapshot=snap.digest,
        new_snapshot=created,
        previous=previous,
        **r.audit_details,
        **({"lineage_added": [link.label for link in added]} if added else {}),
        **({"lineage_refused": [link.label for link in refused]} if refused else {}),
    )
    return RecordedSnapshot(
        digest=snap.digest,
        created=created,
        previous=previous if previous != snap.digest else None,
        parents_missing=tuple(missing),
        parents=tuple(
            ParentLink(p.model.full_name, SnapshotId(p.digest), relation) for p, relation in parents
        ),
        parents_unrecorded=tuple(unrecorded),
        parents_added=tuple(added),
        parents_refused=tuple(refused),
    )


# the advisory lock key of lineage changes: a constant, so every recording on one PostgreSQL database (a catalog)
# takes the same lock; derived like registry/queries.py's per-namespace keys, so it meets none of them
LINEAGE_LOCK_KEY = int.from_bytes(hashlib.sha256(b"modelarc.lineage").digest()[:8], "big", signed=True)


def serialise_lineage_changes(s: Session) -> None:
    """Make recordings that may add lineage take turns on this catalog, until this transaction ends.

    The cycle checks (``refuse_declared_cycle``, ``add_declared_lineage``) read the lineage and the edge follows
    in a later statement: on PostgreSQL under READ COMMITTED two recordings at once (two servers, or two commits
    to one) each checked a graph without the other's uncommitted edge, so a -> b and b -> a could both land, a
    cycle. Held until commit, the lock makes the second wait for the first to end; every statement it runs after
    that takes a fresh snapshot (READ COMMITTED), so its check sees the first one's committed edge and declared
    parents. Taken before the parents are looked up: one committed while this waited is then found, and checked.

    SQLite has one writer at a time, but a recording's reads before its first write wait for no one (the driver
    opens the transaction at the first write), so the same race was there: a write that changes no row takes the
    database's write lock first, as registry/queries.py ``_serialise_names`` does.
    """
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LINEAGE_LOCK_KEY})
    elif dialect == "sqlite":
        s.execute(text("UPDATE lineage SET child_id = child_id WHERE 0"))


def refuse_withdrawn(s: Session, model: Ref, digest: SnapshotId, *, written: str = "") -> None:
    """Raise ``WithdrawnError`` when ``model`` holds snapshot ``digest`` withdrawn: a push or commit of the same
    files would otherwise "succeed" as an unchanged snapshot, moving a tag onto a snapshot every pull refuses,
    while the withdrawal keeps the weights it just wrote unreferenced (the next gc frees them). No record undoes a
    withdrawal (docs/FORMAT.md, Catalog records), so nothing brings it back; the same files under another name
    are a new snapshot. ``written`` is what the caller says of the bytes it wrote already."""
    gone = q.withdrawn_in_model(s, model.namespace, model.name, digest)
    if gone is None:
        return
    at = gone.tombstoned_at
    when = f" on {at:%Y-%m-%d}" if at is not None else ""
    raise WithdrawnError(
        f"the files are those of {gone.model}@{gone.digest}, withdrawn{when}: {gone.tombstone_reason}; a withdrawn "
        f"snapshot is not archived again (nothing recorded, no tag moved){written}"
    )


def add_declared_lineage(
    s: Session, snap: Snapshot, parents: Sequence[tuple[Snapshot, str]], at: dt.datetime
) -> tuple[list[ParentLink], list[ParentLink]]:
    """Add the edges from ``snap`` to those of ``parents`` that its first recording declared but could not record
    (the catalog lacked them then: ``Snapshot.unrecorded_parents``), dated ``at``; return them, and those left out
    because the parent already descends from ``snap`` (the edge would close a cycle).

    A snapshot's lineage is fixed at its first recording; what that recording declared is part of it, even when
    its parent came later (``push --with-parents`` after a push without). Only exactly a declared (parent,
    relation) is added: any other parent is a new claim, which the callers refuse beforehand
    (archive/provenance/repush.py) or ignore, as they always did. A refused one stays declared (unrecorded): the
    first recording did declare it, and every later recording that names it reports it again.

    The caller holds ``serialise_lineage_changes`` (``record_snapshot`` takes it), or two of these at once could
    each add one edge of a cycle.
    """
    if not snap.unrecorded_parents:
        return [], []
    declared = unrecorded_parents_of(s, snap.id)
    have = set(s.scalars(select(Lineage.parent_id).where(Lineage.child_id == snap.id)))
    added, refused = [], []
    for parent, relation in parents:
        link = ParentLink(parent.model.full_name, SnapshotId(parent.digest), relation)
        if link not in declared or parent.id in have:
            continue
        if parent.id == snap.id or snap.id in lq.ancestor_ids(s, parent.id):
            refused.append(link)
            continue
        s.add(Lineage(child_id=snap.id, parent_id=parent.id, relation=relation, created_at=at))
        s.flush()  # the next parent's cycle check sees this edge
        have.add(parent.id)
        declared.remove(link)
        added.append(link)
    if added:
        snap.unrecorded_parents = [link.to_json() for link in declared] or None
        s.flush()
    return added, refused


def refuse_declared_cycle(
    s: Session, model: Ref, digest: SnapshotId, parents: Sequence[tuple[Snapshot, str]]
) -> None:
    """Raise ``LineageCycleError`` when snapshot ``digest`` of ``model``, not yet in the catalog, declares a parent
    that descends from it: through recorded edges and through the parents snapshots declared while the catalog
    lacked them (``Snapshot.unrecorded_parents``), which a later recording of theirs would record.

    A snapshot the catalog holds has its own edges checked as they are added (``add_declared_lineage``); a new one
    has no recorded child, so only a declared-but-unrecorded edge to it can make its parents its descendants. The
    first claim wins: the snapshot that came second, claiming the reverse, is the one refused. The caller holds
    ``serialise_lineage_changes``, as for ``add_declared_lineage``.
    """
    if not parents or lq.snapshot_row_id(s, model.namespace, model.name, digest) is not None:
        return
    for parent, relation in parents:
        if lq.declared_ancestry_reaches(s, parent.id, model.model, digest):
            raise LineageCycleError(
                f"{model.model}@{digest[:19]} declares parent {parent.model.full_name}@{parent.digest[:19]} "
                f"({relation}), which already descends from it (by lineage recorded here, or declared by a "
                "snapshot whose parent was missing then): a snapshot cannot be its own ancestor, so nothing was "
                "recorded"
            )
