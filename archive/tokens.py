"""Bearer tokens for ``modelarc serve``: scopes read < push < admin; stored as sha256, shown once."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelarc.errors import ModelNameClashError, UsageError

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive
    from modelarc.registry.db import CatalogSession

# The catalog rows (registry/tokens.py, SQLAlchemy) are imported inside the functions that reach them: the CLI
# reads SCOPES when it starts, for `token create --scope`, and `modelarc --help` should not load the catalog.

SCOPES = ("read", "push", "admin")
PREFIX = "marc_"
# how a grant names one token by its id (``token:<id>``, archive/access.py): never a token's name
ID_SUBJECT = "token:"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class CreatedToken:
    id: int
    name: str
    scope: str
    token: str  # the only time the plaintext exists outside the holder's hands
    namespaces: tuple[str, ...] | None = None  # where a push token may push; None: every namespace

    def to_json(self) -> dict[str, object]:
        from modelarc.registry.tokens import ALL_NAMESPACES

        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "token": self.token,
            "namespaces": list(self.namespaces) if self.namespaces is not None else ALL_NAMESPACES,
        }


def create_token(archive: Archive, scope: str, name: str, namespaces: Iterable[str] = ()) -> CreatedToken:
    """A new token, shown only in the answer. ``namespaces`` limits a push token to those namespaces (the refs it
    may commit); without any it may push to every namespace, as every token could before limits existed."""
    from modelarc.registry import tokens as token_rows
    from modelarc.registry.refs import check_namespace

    if scope not in SCOPES:
        raise UsageError(f"unknown scope {scope!r}: one of {', '.join(SCOPES)}")
    if not name.strip() or name != name.strip() or not name.isprintable():
        # a grant names its token stripped (archive/access.py ``subject_of``): such a name could never be granted
        raise UsageError(
            f"token name {ascii(name)[:80]} is refused: give a name with no space at either end and no control "
            "character (a grant names the token by it)"
        )
    if name.startswith(ID_SUBJECT):
        raise UsageError(
            f"token name {name!r} is refused: a grant to {ID_SUBJECT}<id> names a token by its id, so no token "
            f"may be named so (pick a name that does not start with {ID_SUBJECT})"
        )
    limited = tuple(sorted({check_namespace(ns) for ns in namespaces}))
    if limited and scope != "push":
        raise UsageError(
            f"only a push token can be limited to namespaces: a {scope} token "
            + ("pushes nowhere" if scope == "read" else "reaches every namespace")
        )
    token = PREFIX + secrets.token_urlsafe(32)
    with archive.catalog.session() as s:
        _refuse_lookalike_namespaces(s, limited)
        token_id = token_rows.add_token(s, name, _hash(token), scope, archive.settings.actor, limited)
    return CreatedToken(token_id, name, scope, token, limited or None)


def _refuse_lookalike_namespaces(s: CatalogSession, namespaces: Iterable[str]) -> None:
    """A namespace this archive spells in another case is refused: a token for ``ACME`` could push nothing beside
    ``acme`` (new names differing only in case are refused, docs/SECURITY.md) and the limit compares spellings."""
    from modelarc.registry import queries as q

    for ns in namespaces:
        if (spelled := q.namespace_spelled_otherwise(s, ns)) is not None:
            raise ModelNameClashError(
                f"namespace {ns} is refused: this archive has namespace {spelled}, which differs only in case "
                f"(limit the token to {spelled})"
            )


def revoke_token(archive: Archive, token_id: int) -> dt.datetime | None:
    """Revoke a token: idempotent, so a script may revoke what it is unsure of. Returns when it had been revoked
    already, else None."""
    from modelarc.registry import tokens as token_rows

    with archive.catalog.session() as s:
        return token_rows.revoke_token(s, token_id, archive.settings.actor)


def list_tokens(archive: Archive) -> list[dict[str, object]]:
    from modelarc.registry import tokens as token_rows

    with archive.catalog.session() as s:
        return [t.to_json() for t in token_rows.list_tokens(s)]


def token_identity(archive: Archive, token: str) -> tuple[str, str] | None:
    """(scope, "token:<id>:<name>") of a live token, for authorisation and the audit log; None if not live."""
    found = token_principal(archive, token)
    return None if found is None else (found.scope, found.actor)


@dataclass(frozen=True)
class Principal:
    """Who is asking, as the access rules see a live token: its id, name and scope (None stands for anonymous),
    and the namespaces it may push to (None: every one)."""

    id: int
    name: str
    scope: str
    namespaces: tuple[str, ...] | None = None

    @property
    def subjects(self) -> tuple[str, ...]:
        """What a grant may name to cover this token: its name, or ``token:<id>`` (archive/access.py). A name that
        starts with ``token:`` (refused since, but a catalog may hold one) is not a subject: a grant to
        ``token:1`` names token 1 by its id, never a token someone named "token:1"."""
        by_id = f"{ID_SUBJECT}{self.id}"
        return (by_id,) if self.name.startswith(ID_SUBJECT) else (self.name, by_id)

    @property
    def actor(self) -> str:
        """``token:<id>:<name>``: the audit log's actor for what this token does, and its leases' holder."""
        return f"token:{self.id}:{self.name}"

    def may_push_to(self, namespace: str) -> bool:
        """Whether this token may record snapshots and move tags under ``namespace``: a push token limited to
        namespaces only in those, an unlimited push token and an admin token anywhere, a read token nowhere."""
        if not allows(self.scope, "push"):
            return False
        return self.scope == "admin" or self.namespaces is None or namespace in self.namespaces

    def push_refusal(self, ref: str, namespace: str) -> str | None:
        """Why this token may not push ``ref`` (in ``namespace``), in one line; None if it may."""
        if self.may_push_to(namespace):
            return None
        if not allows(self.scope, "push"):
            return f"token {self.name} has the {self.scope} scope; pushing needs push"
        allowed = ", ".join(self.namespaces or ())
        # compared as spelled: a token for acme may not create Acme/..., which a push of any token would make a
        # lookalike of acme's models (docs/SECURITY.md, "Lookalike model names")
        spelled = [ns for ns in self.namespaces or () if ns.lower() == namespace.lower()]
        hint = f" (namespaces are compared as spelled: push as {spelled[0]}/...)" if spelled else ""
        return (
            f"token {self.name} may push only to namespace{'s' if len(self.namespaces or ()) > 1 else ''} "
            f"{allowed}; {ref} is in namespace {namespace}{hint}"
        )


def token_principal(archive: Archive, token: str) -> Principal | None:
    """The live token ``token`` as a ``Principal``; None if it is unknown or revoked."""
    from modelarc.registry import tokens as token_rows

    with archive.catalog.session() as s:
        found = token_rows.live_token(s, _hash(token))
    if found is None:
        return None
    return Principal(found.id, found.name, found.scope, found.namespaces)


def allows(scope: str | None, needed: str) -> bool:
    return scope is not None and SCOPES.index(scope) >= SCOPES.index(needed)
