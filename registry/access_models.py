"""The catalog's rows about who may read what: the server's API tokens and the access policies, grants and
requests of gated models (archive/access.py). Part of the schema in registry/models.py (see there why these live
in a module of their own); every change needs an Alembic migration in migrations/versions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from modelarc.registry.models import Base, utcnow


class ApiToken(Base):
    """A bearer token for the server; only its sha256 is stored, the token itself is shown once at creation."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(20))  # read | push | admin (each includes the ones before it)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class TokenNamespace(Base):
    """A namespace a push token may write to (archive/tokens.py). A token with no rows here is archive-wide: the
    tokens made before namespaces existed keep working, and ``token create`` and ``token ls`` say which is which.
    Rows are written once, with the token, and never change (a token's reach is part of what was handed out)."""

    __tablename__ = "token_namespaces"

    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"), primary_key=True)
    namespace: Mapped[str] = mapped_column(String(100), primary_key=True)  # as a REF's: registry/refs.py


class AccessPolicy(Base):
    """Who may read a model's weights (archive/access.py): one row per change, the newest per (model, snapshot) wins.

    ``snapshot_id`` None is the model's policy; a row naming a snapshot overrides it for that snapshot (level
    ``inherit`` ends the override). ``until`` lapses the policy to public from that day on (00:00 UTC), with no one
    acting. Rows are never updated or deleted, so the history of every decision and its reason stays.
    """

    __tablename__ = "access_policies"
    __table_args__ = (Index("ix_access_policies_model_snapshot", "model_id", "snapshot_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    snapshot_id: Mapped[int | None] = mapped_column(ForeignKey("snapshots.id"))
    # public | gated | restricted | inherit (snapshot rows only)
    level: Mapped[str] = mapped_column(String(20))
    until: Mapped[dt.date | None] = mapped_column(Date)
    reason: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    # glob patterns of further files the policy withholds besides weights (archive/access.py); None: weights only
    files: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    # an override a received snapshot's offer brought (``receive_policy``): when its embargo lapses, the model's
    # policy holds again, not public (the pusher chose the date)
    received: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AccessGrant(Base):
    """A grant of a gated model's weights to a token name or to one token (``token:<id>``); revoked, never deleted."""

    __tablename__ = "access_grants"
    __table_args__ = (Index("ix_access_grants_model_subject", "model_id", "subject"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    subject: Mapped[str] = mapped_column(String(220))  # a token name, or token:<id>
    reason: Mapped[str] = mapped_column(Text)
    granted_by: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoke_reason: Mapped[str | None] = mapped_column(Text)


class AccessRequest(Base):
    """A token's request for a gated model's weights, with its justification, until an admin grants or denies it."""

    __tablename__ = "access_requests"
    __table_args__ = (
        Index("ix_access_requests_status", "status", "id"),
        Index("ix_access_requests_token", "token_id", "model_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    token_id: Mapped[int] = mapped_column(ForeignKey("api_tokens.id"))
    token_name: Mapped[str] = mapped_column(String(200))
    justification: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(10))  # pending | granted | denied
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    decision_reason: Mapped[str | None] = mapped_column(Text)
    grant_id: Mapped[int | None] = mapped_column(ForeignKey("access_grants.id"))
