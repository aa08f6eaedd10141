"""Named values the catalog keeps about itself (the ``catalog_settings`` table)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from modelarc.errors import CatalogReadOnlyError
from modelarc.registry.models import CatalogSetting

if TYPE_CHECKING:
    from modelarc.registry.db import Catalog

STORE_ID = "store_id"


def get_setting(s: Session, key: str) -> str | None:
    row = s.get(CatalogSetting, key)
    return None if row is None else row.value


def set_setting(s: Session, key: str, value: str) -> None:
    row = s.get(CatalogSetting, key)
    if row is None:
        s.add(CatalogSetting(key=key, value=value))
    else:
        row.value = value
    s.flush()


def clear_setting(s: Session, key: str) -> None:
    """No value for ``key`` any more (none is fine)."""
    row = s.get(CatalogSetting, key)
    if row is not None:
        s.delete(row)
        s.flush()


def claim_setting(catalog: Catalog, key: str, value: str, settle: Callable[[], str]) -> bool:
    """Record ``key`` for the first time, as what ``settle()`` returns, when something outside the catalog must be
    written with it (``settle`` writes it). The row for ``value`` is written first and committed last, so a
    catalog that may not be written (a read-only session or role, a standby) refuses before ``settle`` touches
    anything, and two processes claiming at once are serialised by the key: the second one's row waits for the
    first and then fails, before its ``settle``. False, with nothing recorded, when the catalog refused the write
    or already had the key; what ``settle`` raises propagates, the row rolled back."""
    try:
        with catalog.session() as s:
            if s.get(CatalogSetting, key) is not None:
                return False
            row = CatalogSetting(key=key, value=value)
            s.add(row)
            s.flush()
            row.value = settle()
    # read-only (Catalog.session names it CatalogReadOnlyError), no grant, or another process's row got there first
    except (DBAPIError, CatalogReadOnlyError):
        return False
    return True


def record_setting(catalog: Catalog, key: str, value: str, attempts: int = 20) -> str:
    """Record ``key`` as ``value`` unless the catalog holds it already, and return what it holds now. Two
    processes recording it at once: the second's insert fails on the first's row (or, on SQLite, on the first's
    write lock after its own read), and it then reads the first's value. A catalog that refuses for another reason
    raises what the last attempt raised."""
    import time

    for attempt in range(attempts):
        try:
            with catalog.session() as s:
                held = get_setting(s, key)
                if held is not None:
                    return held
                set_setting(s, key, value)
            return value
        except DBAPIError:
            with catalog.session() as s:
                held = get_setting(s, key)
            if held is not None:
                return held
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")
