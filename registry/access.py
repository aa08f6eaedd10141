"""Access policies, grants and access requests as the catalog keeps them (the rules live in archive/access.py).

Policies and grants are histories: a change adds a row (a grant is revoked by stamping it), nothing is deleted, so
the catalog can say who decided what, when and why. Every function takes the caller's session and hands back
frozen values.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelarc.errors import NotFoundError
from modelarc.registry.access_models import AccessGrant, AccessPolicy, AccessRequest
from modelarc.registry.models import Model, RunRecord, Snapshot, get_by_id
from modelarc.registry.queries import lock_model
from modelarc.registry.refs import SnapshotId
from modelarc.registry.store_models import SnapshotObject


@dataclass(frozen=True)
class PolicyRecord:
    """One policy row: the model's (``snapshot`` None) or one snapshot's override."""

    id: int
    model_id: int
    model: str  # ns/name
    snapshot_row_id: int | None
    snapshot: SnapshotId | None
    level: str  # public | gated | restricted | inherit (an override that ends)
    until: dt.date | None
    reason: str
    actor: str
    at: dt.datetime
    files: tuple[str, ...] = ()  # glob patterns of files withheld besides weights
    received: bool = False  # an override a received snapshot's offer brought: it lapses to the model's policy

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "snapshot": self.snapshot,
            "level": self.level,
            "until": self.until.isoformat() if self.until else None,
            "files": list(self.files),
            "reason": self.reason,
            "actor": self.actor,
            "at": self.at.isoformat(timespec="seconds"),
        }


@dataclass(frozen=True)
class GrantRecord:
    id: int
    model_id: int
    model: str
    subject: str  # a token name, or token:<id>
    reason: str
    granted_by: str
    granted_at: dt.datetime
    revoked_by: str | None = None
    revoked_at: dt.datetime | None = None
    revoke_reason: str | None = None

    @property
    def live(self) -> bool:
        return self.revoked_at is None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "subject": self.subject,
            "reason": self.reason,
            "granted_by": self.granted_by,
            "granted_at": self.granted_at.isoformat(timespec="seconds"),
            "revoked_by": self.revoked_by,
            "revoked_at": self.revoked_at.isoformat(timespec="seconds") if self.revoked_at else None,
            "revoke_reason": self.revoke_reason,
        }


@dataclass(frozen=True)
class RequestRecord:
    id: int
    model: str
    token_id: int
    token_name: str
    justification: str
    created_at: dt.datetime
    status: str  # pending | granted | denied
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_reason: str | None
    grant_id: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "token_id": self.token_id,
            "token_name": self.token_name,
            "justification": self.justification,
            "created_at": self.created_at.isoformat(timespec="seconds"),
            "status": self.status,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat(timespec="seconds") if self.decided_at else None,
            "decision_reason": self.decision_reason,
            "grant_id": self.grant_id,
        }


@dataclass(frozen=True)
class ObjectUse:
    """A snapshot that references an object (``snapshot_objects``), named enough to find its policy and manifest."""

    snapshot_row_id: int
    model_id: int
    model: str  # ns/name
    digest: SnapshotId
    withdrawn: bool = False  # its weights were withdrawn: its use makes only its public files readable
    # the object is the document of a run of this snapshot (``runs.object_id``): a model's output is derived from
    # its weights, so this use is judged as a weight file's, never as public metadata
    run: bool = False


# ------------------------------------------------------------------------------------------------ policies
def _policy(row: AccessPolicy, model: str, digest: str | None) -> PolicyRecord:
    return PolicyRecord(
        row.id,
        row.model_id,
        model,
        row.snapshot_id,
        SnapshotId(digest) if digest else None,
        row.level,
        row.until,
        row.reason,
        row.actor,
        row.at,
        tuple(str(f) for f in row.files or ()),
        bool(row.received),
    )


def add_policy(
    s: Session,
    model_id: int,
    snapshot_row_id: int | None,
    level: str,
    until: dt.date | None,
    reason: str,
    actor: str,
    at: dt.datetime,
    files: tuple[str, ...] = (),
    received: bool = False,
) -> None:
    s.add(
        AccessPolicy(
            files=list(files) or None,
            received=received,
            model_id=model_id,
            snapshot_id=snapshot_row_id,
            level=level,
            until=until,
            reason=reason,
            actor=actor,
            at=at,
        )
    )
    s.flush()


def lock_policies(s: Session, model_id: int) -> None:
    """Policy changes to one model take turns: a row lock on the model until the transaction ends (PostgreSQL;
    SQLite has one writer at a time). A change judged against the policy that holds (a push token may only tighten
    one: archive/access.py ``apply_policies``) reads it after taking the lock, so an ``access set`` committed
    meanwhile is judged, never overwritten by a row written on what held before it."""
    lock_model(s, model_id)


def current_policies(
    s: Session, model_ids: Iterable[int] | None = None, snapshot_row_ids: Iterable[int] = ()
) -> list[PolicyRecord]:
    """The newest policy row of each model in ``model_ids`` (every model when None) and of each override: of the
    snapshots ``snapshot_row_ids`` when ``model_ids`` is given, of every snapshot of those models otherwise."""
    q = (
        select(AccessPolicy, Model.namespace, Model.name, Snapshot.digest)
        .join(Model, Model.id == AccessPolicy.model_id)
        .outerjoin(Snapshot, Snapshot.id == AccessPolicy.snapshot_id)
        .order_by(AccessPolicy.id)
    )
    snaps = sorted(set(snapshot_row_ids))
    if model_ids is not None:
        ids = sorted(set(model_ids))
        if not ids:
            return []
        q = q.where(AccessPolicy.model_id.in_(ids))
        if snaps:
            q = q.where(AccessPolicy.snapshot_id.is_(None) | AccessPolicy.snapshot_id.in_(snaps))
    newest: dict[tuple[int, int | None], PolicyRecord] = {}
    for row, namespace, name, digest in s.execute(q):
        newest[(row.model_id, row.snapshot_id)] = _policy(row, f"{namespace}/{name}", digest)
    return sorted(newest.values(), key=lambda p: (p.model, p.snapshot or ""))


def policy_history(s: Session, model_id: int | None = None) -> list[PolicyRecord]:
    """Every policy change of a model and its snapshots (of every model when None), oldest first."""
    q = (
        select(AccessPolicy, Model.namespace, Model.name, Snapshot.digest)
        .join(Model, Model.id == AccessPolicy.model_id)
        .outerjoin(Snapshot, Snapshot.id == AccessPolicy.snapshot_id)
        .order_by(AccessPolicy.id)
    )
    rows = s.execute(q if model_id is None else q.where(AccessPolicy.model_id == model_id))
    return [_policy(row, f"{ns}/{name}", digest) for row, ns, name, digest in rows]


# ------------------------------------------------------------------------------------------------ grants
def _grant(row: AccessGrant, model: str) -> GrantRecord:
    return GrantRecord(
        row.id,
        row.model_id,
        model,
        row.subject,
        row.reason,
        row.granted_by,
        row.granted_at,
        row.revoked_by,
        row.revoked_at,
        row.revoke_reason,
    )


def add_grant(
    s: Session, model_id: int, subject: str, reason: str, actor: str, at: dt.datetime
) -> GrantRecord:
    row = AccessGrant(model_id=model_id, subject=subject, reason=reason, granted_by=actor, granted_at=at)
    s.add(row)
    s.flush()
    model = s.get(Model, model_id)
    assert model is not None
    return _grant(row, model.full_name)


def revoke_grants(
    s: Session, model_id: int, subject: str, reason: str, actor: str, at: dt.datetime
) -> list[GrantRecord]:
    """Stamp every live grant of ``subject`` on the model revoked; the ones it revoked (none: nothing was live)."""
    model = s.get(Model, model_id)
    assert model is not None
    rows = s.scalars(
        select(AccessGrant)
        .where(
            AccessGrant.model_id == model_id, AccessGrant.subject == subject, AccessGrant.revoked_at.is_(None)
        )
        .order_by(AccessGrant.id)
    ).all()
    for row in rows:
        row.revoked_at, row.revoked_by, row.revoke_reason = at, actor, reason
    s.flush()
    return [_grant(row, model.full_name) for row in rows]


def grants(
    s: Session,
    model_ids: Iterable[int] | None = None,
    *,
    subjects: Iterable[str] | None = None,
    live_only: bool = True,
) -> list[GrantRecord]:
    """Grants of these models (every model when None), of these subjects only when given, oldest first."""
    q = (
        select(AccessGrant, Model.namespace, Model.name)
        .join(Model, Model.id == AccessGrant.model_id)
        .order_by(AccessGrant.id)
    )
    if model_ids is not None:
        q = q.where(AccessGrant.model_id.in_(sorted(set(model_ids))))
    if subjects is not None:
        q = q.where(AccessGrant.subject.in_(sorted(set(subjects))))
    if live_only:
        q = q.where(AccessGrant.revoked_at.is_(None))
    return [_grant(row, f"{ns}/{name}") for row, ns, name in s.execute(q)]


# ------------------------------------------------------------------------------------------------ requests
def _request(row: AccessRequest, model: str) -> RequestRecord:
    return RequestRecord(
        row.id,
        model,
        row.token_id,
        row.token_name,
        row.justification,
        row.created_at,
        row.status,
        row.decided_by,
        row.decided_at,
        row.decision_reason,
        row.grant_id,
    )


def add_request(
    s: Session, model_id: int, token_id: int, token_name: str, justification: str, at: dt.datetime
) -> RequestRecord:
    row = AccessRequest(
        model_id=model_id,
        token_id=token_id,
        token_name=token_name,
        justification=justification,
        created_at=at,
        status="pending",
    )
    s.add(row)
    s.flush()
    model = s.get(Model, model_id)
    assert model is not None
    return _request(row, model.full_name)


def list_requests(
    s: Session, *, status: str | None = None, token_id: int | None = None, model_id: int | None = None
) -> list[RequestRecord]:
    """Requests, oldest first, of one status / token / model when given."""
    q = (
        select(AccessRequest, Model.namespace, Model.name)
        .join(Model, Model.id == AccessRequest.model_id)
        .order_by(AccessRequest.id)
    )
    if status is not None:
        q = q.where(AccessRequest.status == status)
    if token_id is not None:
        q = q.where(AccessRequest.token_id == token_id)
    if model_id is not None:
        q = q.where(AccessRequest.model_id == model_id)
    return [_request(row, f"{ns}/{name}") for row, ns, name in s.execute(q)]


def decide_request(
    s: Session, request_id: int, status: str, reason: str, actor: str, at: dt.datetime, grant_id: int | None
) -> RequestRecord:
    row = get_by_id(s, AccessRequest, request_id)
    if row is None:
        raise NotFoundError(f"no access request {request_id} (see `modelarc access requests --all`)")
    row.status, row.decided_by, row.decided_at = status, actor, at
    row.decision_reason, row.grant_id = reason, grant_id
    s.flush()
    model = s.get(Model, row.model_id)
    assert model is not None
    return _request(row, model.full_name)


def get_request(s: Session, request_id: int) -> RequestRecord:
    row = get_by_id(s, AccessRequest, request_id)
    if row is None:
        raise NotFoundError(f"no access request {request_id} (see `modelarc access requests --all`)")
    model = s.get(Model, row.model_id)
    assert model is not None
    return _request(row, model.full_name)


# ------------------------------------------------------------------------------------------------ objects
def objects_uses(s: Session, object_ids: Iterable[str]) -> dict[str, list[ObjectUse]]:
    """Every snapshot that has each of ``object_ids`` as content, in one indexed query
    (``snapshot_objects.object_id``); an object no snapshot uses as content is absent from the answer.

    A snapshot that keeps the object only as the base of one of its delta objects does not count: reading a
    fine-tune gives no right to its parent's bytes (the server decodes the delta for such a reader instead). A use
    as one of the snapshot's run documents says so (``ObjectUse.run``)."""
    ids = sorted(set(object_ids))
    uses: dict[str, list[ObjectUse]] = {}
    is_run = (
        select(RunRecord.id)
        .where(RunRecord.snapshot_id == Snapshot.id, RunRecord.object_id == SnapshotObject.object_id)
        .exists()
    )
    for i in range(0, len(ids), USES_BATCH):  # a push asks about every object of a snapshot: tens of thousands
        rows = s.execute(
            select(
                SnapshotObject.object_id,
                Snapshot.id,
                Snapshot.model_id,
                Model.namespace,
                Model.name,
                Snapshot.digest,
                Snapshot.tombstoned_at,
                is_run,
            )
            .join(Snapshot, SnapshotObject.snapshot_id == Snapshot.id)
            .join(Model, Model.id == Snapshot.model_id)
            .where(SnapshotObject.object_id.in_(ids[i : i + USES_BATCH]), SnapshotObject.as_base.is_(False))
            .order_by(Snapshot.id)
        )
        for oid, sid, mid, ns, name, digest, tombstoned_at, run in rows:
            withdrawn = tombstoned_at is not None
            use = ObjectUse(sid, mid, f"{ns}/{name}", SnapshotId(digest), withdrawn, bool(run))
            uses.setdefault(oid, []).append(use)
    return uses


# ids per query: PostgreSQL's protocol takes at most 65,535 parameters in one statement
USES_BATCH = 1000
