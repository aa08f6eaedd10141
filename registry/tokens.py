"""Bearer-token rows: only each token's sha256 is kept; the plaintext is shown once by archive/tokens.py."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelarc.errors import NotFoundError
from modelarc.registry import queries as q
from modelarc.registry.access_models import ApiToken
from modelarc.registry.models import get_by_id, utcnow


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    scope: str
    created_at: str
    revoked: bool

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "created_at": self.created_at,
            "revoked": self.revoked,
        }


def add_token(s: Session, name: str, token_hash: str, scope: str, actor: str) -> int:
    row = ApiToken(name=name, token_hash=token_hash, scope=scope)
    s.add(row)
    s.flush()
    q.audit(s, actor, "token.create", name, id=row.id, scope=scope)
    return row.id


def revoke_token(s: Session, token_id: int, actor: str) -> None:
    row = get_by_id(s, ApiToken, token_id)
    if row is None:
        raise NotFoundError(f"no token {token_id} (see `modelarc token ls`)")
    row.revoked_at = row.revoked_at or utcnow()
    q.audit(s, actor, "token.revoke", row.name, id=row.id)


def list_tokens(s: Session) -> list[TokenInfo]:
    return [
        TokenInfo(t.id, t.name, t.scope, t.created_at.isoformat(timespec="seconds"), t.revoked_at is not None)
        for t in s.scalars(select(ApiToken).order_by(ApiToken.id))
    ]


def live_token(s: Session, token_hash: str) -> tuple[int, str, str] | None:
    """(id, name, scope) of the unrevoked token with this hash, if any."""
    row = s.scalar(select(ApiToken).where(ApiToken.token_hash == token_hash))
    if row is None or row.revoked_at is not None:
        return None
    return row.id, row.name, row.scope


def find_token(s: Session, token_id: int) -> TokenInfo | None:
    t = get_by_id(s, ApiToken, token_id)
    if t is None:
        return None
    return TokenInfo(
        t.id, t.name, t.scope, t.created_at.isoformat(timespec="seconds"), t.revoked_at is not None
    )


def live_tokens_named(s: Session, name: str) -> list[TokenInfo]:
    """The unrevoked tokens called ``name`` (names are not unique: a grant to a name covers them all)."""
    rows = s.scalars(
        select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at.is_(None)).order_by(ApiToken.id)
    )
    return [TokenInfo(t.id, t.name, t.scope, t.created_at.isoformat(timespec="seconds"), False) for t in rows]
