"""Signing keys the catalog knows, and which of them this archive trusts (select() queries, frozen values out)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from modelarc.errors import UsageError
from modelarc.registry import queries as q
from modelarc.registry.models import Signature, SigningKey, utcnow


@dataclass(frozen=True)
class KeyInfo:
    fingerprint: str
    label: str | None
    trusted: bool
    local: bool
    created_at: str  # ISO 8601, seconds

    def to_json(self) -> dict[str, object]:
        return {
            "fingerprint": self.fingerprint,
            "label": self.label,
            "trusted": self.trusted,
            "local": self.local,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class PublishedKey(KeyInfo):
    """A key with its public half, as an archive publishes the keys it trusts (``GET /v1/transfer/keys``)."""

    public_pem: str

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "public_pem": self.public_pem}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PublishedKey:
        """One entry of another archive's answer; ``UsageError`` if it is not shaped like one."""
        if not isinstance(doc, dict) or not all(
            type(doc.get(k)) is str for k in ("fingerprint", "public_pem")
        ):
            raise UsageError("a published key needs a fingerprint and a public_pem")
        label, created = doc.get("label"), doc.get("created_at")
        flags = (doc.get("trusted", False), doc.get("local", False))
        if not (label is None or type(label) is str) or not (created is None or type(created) is str):
            raise UsageError("a published key's label and created_at are strings")
        if not all(type(flag) is bool for flag in flags):  # bool("false") is True: never coerced
            raise UsageError("a published key's trusted and local are true or false")
        return cls(doc["fingerprint"], label, *flags, created or "", doc["public_pem"])


@dataclass(frozen=True)
class SignatureRecord:
    """A signature on a snapshot: the key that made it, whether this archive trusts that key now, and when."""

    key: str  # fingerprint
    trusted: bool
    created_at: str  # ISO 8601, seconds

    def to_json(self) -> dict[str, object]:
        return {"key": self.key, "trusted": "yes" if self.trusted else "no", "created_at": self.created_at}


@dataclass(frozen=True)
class CatalogKey:
    """A key row as values, its times exact: what a catalog record (archive/records.py) says about a key."""

    fingerprint: str
    public_pem: str
    label: str | None
    trusted: bool
    local: bool
    created_at: dt.datetime


def find_key(s: Session, fingerprint: str) -> CatalogKey | None:
    row = s.scalar(select(SigningKey).where(SigningKey.fingerprint == fingerprint))
    return None if row is None else _catalog_key(row)


def all_keys(s: Session) -> list[CatalogKey]:
    """Every key, oldest first."""
    return [
        _catalog_key(k) for k in s.scalars(select(SigningKey).order_by(SigningKey.created_at, SigningKey.id))
    ]


def public_pems(s: Session, fingerprints: Iterable[str]) -> dict[str, str]:
    """fingerprint -> public PEM of each of ``fingerprints`` the catalog knows, trusted or not."""
    wanted = sorted(set(fingerprints))
    rows = s.execute(
        select(SigningKey.fingerprint, SigningKey.public_pem).where(SigningKey.fingerprint.in_(wanted))
    )
    return {fp: pem for fp, pem in rows}


def _catalog_key(k: SigningKey) -> CatalogKey:
    return CatalogKey(k.fingerprint, k.public_pem, k.label, k.trusted, k.is_local, k.created_at)


def _info(k: SigningKey) -> KeyInfo:
    return KeyInfo(k.fingerprint, k.label, k.trusted, k.is_local, k.created_at.isoformat(timespec="seconds"))


def trust_key(
    s: Session,
    fingerprint: str,
    pem: str,
    *,
    label: str | None,
    local: bool,
    actor: str,
    at: dt.datetime | None = None,
) -> KeyInfo:
    """Record the key if new, and trust it; each change is in the audit log. ``at``: when (default now)."""
    at = at or utcnow()
    row = s.scalar(select(SigningKey).where(SigningKey.fingerprint == fingerprint))
    if row is None:
        row = SigningKey(
            fingerprint=fingerprint, public_pem=pem, label=label, trusted=True, is_local=local, created_at=at
        )
        try:
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:
            # another process recorded the same key since the select (two `init`s of one home at once): theirs
            row = s.scalars(select(SigningKey).where(SigningKey.fingerprint == fingerprint)).one()
        else:
            q.audit(s, actor, "key.trust", fingerprint, at=at, label=label, local=local)
    if not row.trusted:
        row.trusted = True
        q.audit(s, actor, "key.trust", fingerprint, at=at, label=label)
    return _info(row)


def set_trust(
    s: Session, fingerprint_prefix: str, trusted: bool, actor: str, at: dt.datetime | None = None
) -> str:
    """Trust or distrust the one key whose fingerprint starts with ``fingerprint_prefix`` (4 characters at least)."""
    if len(fingerprint_prefix) < 4:  # said apart: the key it names may well be the only one
        raise UsageError(
            f"{fingerprint_prefix!r} is too short: give at least 4 characters of a fingerprint (`modelarc keys list`)"
        )
    rows = s.scalars(
        # autoescape: a prefix of "%" names no key, not every key
        select(SigningKey).where(SigningKey.fingerprint.startswith(fingerprint_prefix.lower(), autoescape=True))
    ).all()
    if len(rows) != 1:
        raise UsageError(
            f"{fingerprint_prefix!r} names {'no' if not rows else len(rows)} known keys; it must name exactly one "
            "(see `modelarc keys list`)"
        )
    rows[0].trusted = trusted
    q.audit(s, actor, "key.trust" if trusted else "key.distrust", rows[0].fingerprint, at=at)
    return rows[0].fingerprint


def list_keys(s: Session) -> list[KeyInfo]:
    return [_info(k) for k in s.scalars(select(SigningKey).order_by(SigningKey.id))]


def trusted_pems(s: Session) -> list[bytes]:
    return [
        pem.encode() for pem in s.scalars(select(SigningKey.public_pem).where(SigningKey.trusted.is_(True)))
    ]


def signatures_of(s: Session, snapshot_id: int) -> list[SignatureRecord]:
    """The signatures on the snapshot with row id ``snapshot_id``, oldest first."""
    rows = s.scalars(
        select(Signature)
        .where(Signature.snapshot_id == snapshot_id)
        .options(selectinload(Signature.key))
        .order_by(Signature.id)
    )
    return [
        SignatureRecord(sig.key.fingerprint, sig.key.trusted, sig.created_at.isoformat(timespec="seconds"))
        for sig in rows
    ]


def signature_object_ids(s: Session, snapshot_id: int) -> list[str]:
    """The signature bundles of a snapshot, as stored objects, oldest first."""
    return list(
        s.scalars(
            select(Signature.object_id).where(Signature.snapshot_id == snapshot_id).order_by(Signature.id)
        )
    )
