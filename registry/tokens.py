"""Bearer-token rows: only each token's sha256 is kept; the plaintext is shown once by archive/tokens.py.

A token's namespaces (``token_namespaces``) limit where it may push; a token without any reaches every namespace.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelarc.errors import NotFoundError
from modelarc.registry import queries as q
from modelarc.registry.access_models import ApiToken, TokenNamespace
from modelarc.registry.models import get_by_id, utcnow

ALL_NAMESPACES = "all"  # how a listing spells "not limited to namespaces"


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    scope: str
    created_at: str
    revoked: bool
    namespaces: tuple[str, ...] | None = None  # None: every namespace (no limit was set)

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "created_at": self.created_at,
            "revoked": self.revoked,
            "namespaces": list(self.namespaces) if self.namespaces is not None else ALL_NAMESPACES,
        }


@dataclass(frozen=True)
class LiveToken:
    """What the server needs of a live token on each request: who it is, its scope, where it may push."""

    id: int
    name: str
    scope: str
    namespaces: tuple[str, ...] | None  # None: every namespace


def add_token(
    s: Session, name: str, token_hash: str, scope: str, actor: str, namespaces: Iterable[str] = ()
) -> int:
    """``namespaces``: those the token may push to (already checked by the caller); empty: every namespace."""
    row = ApiToken(name=name, token_hash=token_hash, scope=scope)
    s.add(row)
    s.flush()
    limited = sorted(set(namespaces))
    s.add_all(TokenNamespace(token_id=row.id, namespace=ns) for ns in limited)
    details: dict[str, object] = {"id": row.id, "scope": scope}
    if limited:
        details["namespaces"] = limited
    q.audit(s, actor, "token.create", name, **details)
    return row.id


def revoke_token(s: Session, token_id: int, actor: str) -> dt.datetime | None:
    """Revoke the token; None, or when it was revoked already (nothing changes, and the audit log gets no second
    entry saying it was revoked now)."""
    row = get_by_id(s, ApiToken, token_id)
    if row is None:
        raise NotFoundError(f"no token {token_id} (see `modelarc token ls`)")
    if row.revoked_at is not None:
        return row.revoked_at
    row.revoked_at = utcnow()
    q.audit(s, actor, "token.revoke", row.name, id=row.id)
    return None


def _namespaces_of(s: Session, token_ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
    """Each token's namespaces in one query (tokens without any are absent: they reach every namespace)."""
    ids = list(token_ids)
    out: dict[int, list[str]] = {}
    if ids:
        rows = s.execute(
            select(TokenNamespace.token_id, TokenNamespace.namespace)
            .where(TokenNamespace.token_id.in_(ids))
            .order_by(TokenNamespace.token_id, TokenNamespace.namespace)
        )
        for token_id, namespace in rows:
            out.setdefault(token_id, []).append(namespace)
    return {token_id: tuple(names) for token_id, names in out.items()}


def _infos(s: Session, rows: Iterable[ApiToken]) -> list[TokenInfo]:
    tokens = list(rows)
    limits = _namespaces_of(s, (t.id for t in tokens))
    return [
        TokenInfo(
            t.id,
            t.name,
            t.scope,
            t.created_at.isoformat(timespec="seconds"),
            t.revoked_at is not None,
            limits.get(t.id),
        )
        for t in tokens
    ]


def list_tokens(s: Session) -> list[TokenInfo]:
    return _infos(s, s.scalars(select(ApiToken).order_by(ApiToken.id)))


def live_token(s: Session, token_hash: str) -> LiveToken | None:
    """The unrevoked token with this hash, if any."""
    row = s.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
    if row is None or row.revoked_at is not None:
        return None
    return LiveToken(row.id, row.name, row.scope, _namespaces_of(s, [row.id]).get(row.id))


def find_token(s: Session, token_id: int) -> TokenInfo | None:
    t = get_by_id(s, ApiToken, token_id)
    return None if t is None else _infos(s, [t])[0]


def live_tokens_named(s: Session, name: str) -> list[TokenInfo]:
    """The unrevoked tokens called ``name`` (names are not unique: a grant to a name covers them all)."""
    rows = s.scalars(
        select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None)).order_by(ApiToken.id)
    )
    return _infos(s, rows)
