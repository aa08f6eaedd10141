"""Lockfiles pin refs to snapshot ids, so a study re-run years later loads exactly the same weights.

{"format": "modelarc.lock", "version": 1, "created_at": "...",
 "refs": {"acme/tiny:v1": {"model": "acme/tiny", "snapshot": "sha256:..."}}}
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from modelarc.archive.repository import Archive
from modelarc.errors import NotFoundError, UsageError

LOCK_FORMAT = "modelarc.lock"


def make_lock(archive: Archive, refs: list[str]) -> str:
    pinned = {}
    for text in refs:
        ref, snap = archive.resolve(text)
        pinned[text] = {"model": ref.model, "snapshot": snap.digest}
    doc = {
        "format": LOCK_FORMAT,
        "version": 1,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "refs": pinned,
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def resolve_through_lock(archive: Archive, ref: str, lock: str | Path) -> str:
    """``ns/name@sha256:...`` for ``ref`` as pinned in ``lock``; the pinned snapshot must be in the archive."""
    try:
        doc = json.loads(Path(lock).read_text())
    # ValueError: also UnicodeDecodeError; RecursionError: damaged into "[[[[..." nested too deeply to parse
    except (OSError, ValueError, RecursionError) as exc:
        raise UsageError(
            f"{lock}: not a readable lockfile ({exc}); write it again with `modelarc lock`"
        ) from None
    damaged = UsageError(f"{lock}: not a modelarc lockfile (version 1); write it again with `modelarc lock`")
    if not isinstance(doc, dict) or doc.get("format") != LOCK_FORMAT or doc.get("version") != 1:
        raise damaged
    if not isinstance(refs := doc.get("refs", {}), dict):
        raise damaged
    entry = refs.get(ref)
    if entry is None:
        raise NotFoundError(f"{ref} is not pinned in {lock}")
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("model", "snapshot")):
        raise damaged
    pinned = f"{entry['model']}@{entry['snapshot']}"
    archive.resolve(pinned)  # raises a clear error when the pinned snapshot is not in this archive
    return pinned
