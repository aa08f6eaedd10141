"""Bearer tokens for ``modelarc serve``: scopes read < push < admin; stored as sha256, shown once."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelarc.errors import UsageError

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive

# The catalog rows (registry/tokens.py, SQLAlchemy) are imported inside the functions that reach them: the CLI
# reads SCOPES when it starts, for `token create --scope`, and `modelarc --help` should not load the catalog.

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
    from modelarc.registry import tokens as token_rows

    if scope not in SCOPES:
        raise UsageError(f"unknown scope {scope!r}: one of {', '.join(SCOPES)}")
    token = PREFIX + secrets.token_urlsafe(32)
    with archive.catalog.session() as s:
        token_id = token_rows.add_token(s, name, _hash(token), scope, archive.settings.actor)
    return CreatedToken(token_id, name, scope, token)


def revoke_token(archive: Archive, token_id: int) -> None:
    from modelarc.registry import tokens as token_rows

    with archive.catalog.session() as s:
        token_rows.revoke_token(s, token_id, archive.settings.actor)


def list_tokens(archive: Archive) -> list[dict[str, object]]:
    from modelarc.registry import tokens as token_rows

    with archive.catalog.session() as s:
        return [t.to_json() for t in token_rows.list_tokens(s)]


def token_identity(archive: Archive, token: str) -> tuple[str, str] | None:
    """(scope, "token:<id>:<name>") of a live token, for authorisation and the audit log; None if not live."""
    from modelarc.registry import tokens as token_rows

    with archive.catalog.session() as s:
        found = token_rows.live_token(s, _hash(token))
    if found is None:
        return None
    token_id, name, scope = found
    return scope, f"token:{token_id}:{name}"


@dataclass(frozen=True)
class Principal:
    """Who is asking, as the access rules see a live token: its id, name and scope (None stands for anonymous)."""

    id: int
    name: str
    scope: str

    @property
    def subjects(self) -> tuple[str, str]:
        """What a grant may name to cover this token: its name, or ``token:<id>`` (archive/access.py)."""
        return self.name, f"token:{self.id}"

    @classmethod
    def from_identity(cls, scope: str, actor: str) -> Principal:
        """From ``token_identity``'s (scope, ``token:<id>:<name>``), as the server keeps it on each request."""
        kind, token_id, name = actor.split(":", 2)
        if kind != "token" or not token_id.isdigit():
            raise ValueError(f"not a token identity: {actor!r}")
        return cls(int(token_id), name, scope)


def token_principal(archive: Archive, token: str) -> Principal | None:
    """The live token ``token`` as a ``Principal``; None if it is unknown or revoked."""
    found = token_identity(archive, token)
    return None if found is None else Principal.from_identity(*found)


def allows(scope: str | None, needed: str) -> bool:
    return scope is not None and SCOPES.index(scope) >= SCOPES.index(needed)
