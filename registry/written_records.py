"""Which catalog records this archive wrote (the ``written_records`` table): the notes `repair` checks before it
puts a record back from a mirror (archive/repair.py)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelarc.registry.store_models import WrittenRecord

NOTED_BATCH = 500  # keys per IN (...): a repair may ask about every record of a store


def note_written(s: Session, key: str) -> None:
    """Note ``key`` as written by this archive, in the caller's transaction (a second note of it is a no-op: a
    rebuild replays into a catalog whose `init` already noted its own key's record)."""
    if s.get(WrittenRecord, key) is None:
        s.add(WrittenRecord(key=key))
        s.flush()


def note_all(s: Session, keys: Iterable[str]) -> int:
    """Note every one of ``keys`` not noted yet, in the caller's transaction; returns how many were new."""
    new = sorted(set(keys) - noted(s, keys))
    s.add_all(WrittenRecord(key=key) for key in new)
    s.flush()
    return len(new)


def noted(s: Session, keys: Iterable[str]) -> set[str]:
    """Those of ``keys`` this archive noted as written."""
    wanted = sorted(set(keys))
    found: set[str] = set()
    for i in range(0, len(wanted), NOTED_BATCH):
        found.update(
            s.scalars(select(WrittenRecord.key).where(WrittenRecord.key.in_(wanted[i : i + NOTED_BATCH])))
        )
    return found
