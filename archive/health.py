"""Is this archive usable right now? The catalog and the store each answer one cheap question.

Used by the server's readiness route: each check catches its own failure so the answer names what is wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelarc.archive.repository import Archive


def readiness(archive: Archive) -> dict[str, tuple[bool, str]]:
    return {"catalog": _catalog(archive), "store": _store(archive)}


def _catalog(archive: Archive) -> tuple[bool, str]:
    try:
        current, expected = archive.catalog.schema_state()
    except Exception as exc:  # any driver error: the point is to report it, not to crash the probe
        return False, f"catalog unreachable: {type(exc).__name__}"
    if current != expected:
        return False, f"catalog schema at {current}, this server expects {expected}"
    return True, f"schema {current}"


def _store(archive: Archive) -> tuple[bool, str]:
    try:
        next(iter(archive.store.iter_ids()), None)
    except Exception as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return False, f"store unreachable: {first_line[:200]}"
    return True, "listing answered"
