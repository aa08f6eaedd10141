"""Bearer tokens for ``modelarc serve``: scopes read < push < admin; stored as sha256, shown once."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from modelarc.archive.repository import Archive
from modelarc.errors import NotFoundError, UsageError
from modelarc.registry import queries as q
from modelarc.registry.models import ApiToken, utcnow

SCOPES = ("read", "push", "admin")
PREFIX = "marc_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedToken:
    id: int
    name: str
    scope: str
    token: str  # the only time the plaintext exists outside the holder's hands


def create_token(archive: Archive, scope: str, name: str) -> CreatedToken:
    if scope not in SCOPES:
        raise UsageError(f"unknown scope {scope!r}: one of {', '.join(SCOPES)}")
    token = PREFIX + secrets.token_urlsafe(32)
    with archive.catalog.session() as s:
        row = ApiToken(name=name, token_hash=_hash(token), scope=scope)
        s.add(row)
        s.flush()
        q.audit(s, archive.settings.actor, "token.create", name, id=row.id, scope=scope)
        return CreatedToken(row.id, name, scope, token)


def revoke_token(archive: Archive, token_id: int) -> None:
    with archive.catalog.session() as s:
        row = s.get(ApiToken, token_id)
        if row is None:
            raise NotFoundError(f"no token {token_id} (see `modelarc token ls`)")
        row.revoked_at = row.revoked_at or utcnow()
        q.audit(s, archive.settings.actor, "token.revoke", row.name, id=row.id)


def list_tokens(archive: Archive) -> list[dict[str, object]]:
    with archive.catalog.session() as s:
        return [
            {
                "id": t.id,
                "name": t.name,
                "scope": t.scope,
                "created_at": t.created_at.isoformat(timespec="seconds"),
                "revoked": t.revoked_at is not None,
            }
            for t in s.query(ApiToken).order_by(ApiToken.id)
        ]


def token_identity(archive: Archive, token: str) -> tuple[str, str] | None:
    """(scope, "token:<id>:<name>") of a live token, for authorisation and the audit log; None if not live."""
    with archive.catalog.session() as s:
        row = s.query(ApiToken).filter_by(token_hash=_hash(token)).one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        return row.scope, f"token:{row.id}:{row.name}"


def allows(scope: str | None, needed: str) -> bool:
    return scope is not None and SCOPES.index(scope) >= SCOPES.index(needed)
