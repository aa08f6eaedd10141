"""Hugging Face revisions on an archived model: which snapshot a ``revision`` names, and through which tag.

A revision is, in this order of trial:
- the 40 hex digits of a commit id (the first 40 of a snapshot id, docs/API.md) or ``sha256:<hex or prefix>``:
  that snapshot, immutable;
- ``main``: the tag ``main`` if the model has one, else ``latest`` (``HEAD_TAGS``);
- any other text: the tag of that name (a tag named like a commit id is tried after the digest).
A withdrawn snapshot still resolves (its history and provenance stay readable); routes that hand out its files
call ``refuse_withdrawn``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from modelarc.archive.repository import Archive
from modelarc.errors import (
    InvalidRefError,
    ModelNotFoundError,
    NotFoundError,
    TagNotFoundError,
    WithdrawnError,
)
from modelarc.registry import queries as q
from modelarc.registry.model_heads import HEAD_TAGS
from modelarc.registry.refs import Ref, SnapshotId, check_tag, parse_model_name
from modelarc.registry.snapshots import SnapshotRecord

_DIGEST = re.compile(r"(?:sha256:)?([0-9a-f]{4,64})")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SHOWN = 80  # characters of a client's revision an error quotes


@dataclass(frozen=True)
class Revision:
    """A resolved revision: the snapshot, and the tag whose history it follows (None for an immutable id)."""

    model_id: int  # the model's catalog key
    model: str  # ns/name
    model_created_at: dt.datetime  # when the model's first snapshot was recorded
    requested: str
    tag: str | None
    snapshot: SnapshotRecord


def commit_id(snapshot: SnapshotId | str) -> str:
    """A stable 40-hex "commit" for a snapshot id, as git-style clients expect: its first 40 hex digits."""
    return SnapshotId(snapshot).hex[:40]


def resolve_revision(archive: Archive, repo: str, revision: str) -> Revision:
    """``ModelNotFoundError`` for an unknown model (or a malformed name), ``NotFoundError`` subclasses for an
    unknown revision; ``AmbiguousRefError`` for a digest prefix several snapshots share."""
    try:
        ns, name = parse_model_name(repo)
    except InvalidRefError:
        raise ModelNotFoundError(f"repository {repo[:_SHOWN]!r} not found") from None
    with archive.catalog.session() as s:
        model = q.find_model(s, ns, name)
        if model is None:
            raise q.model_not_found(s, ns, name, f"repository {repo} not found")
        for ref, tag in _candidates(ns, name, revision):
            try:
                snap = q.resolve_snapshot(s, ref)
            except NotFoundError:
                continue
            return Revision(
                model.row_id, model.full_name, model.created_at or snap.created_at, revision, tag, snap
            )
    raise TagNotFoundError(f"revision {revision[:_SHOWN]!r} not found in {repo}")


def _candidates(ns: str, name: str, revision: str) -> list[tuple[Ref, str | None]]:
    out: list[tuple[Ref, str | None]] = []
    digest = _DIGEST.fullmatch(revision)
    if digest and (revision.startswith("sha256:") or _COMMIT.fullmatch(revision)):
        out.append((Ref(ns, name, digest=f"sha256:{digest[1]}"), None))
    tags = HEAD_TAGS if revision == "main" else (revision,)
    for tag in tags:
        try:
            out.append((Ref(ns, name, tag=check_tag(tag)), tag))
        except InvalidRefError:
            pass  # not a tag name either: "not found", as the Hub answers an unknown revision
    return out


def refuse_withdrawn(rev: Revision) -> None:
    """Files of a withdrawn snapshot are not handed out (its history and provenance are)."""
    snap = rev.snapshot
    if snap.withdrawn:
        label = f"{rev.model}:{rev.tag}" if rev.tag else snap.label
        raise WithdrawnError(f"{label} was withdrawn: {snap.tombstone_reason}")
