"""Writes in a savepoint that the catalog refuses because another transaction held a lock past MODELARC_LOCK_WAIT are
"busy" (``CatalogBusyError``: nothing written, try again), never "a value the catalog cannot hold"
(``CatalogValueError``). ``rebuild-catalog`` runs each record's writes in a savepoint and skips, with a warning, a
record whose values the catalog refuses (archive/rebuild.py): a busy catalog taken for a bad value would leave good
records out of the rebuilt catalog instead of failing the rebuild.
"""

from __future__ import annotations

import pytest
from catalogkit import lock_held

from modelarc.errors import CatalogBusyError, CatalogValueError
from modelarc.registry.db import Catalog, savepoint
from modelarc.registry.models import CatalogSetting

HOLD = 20  # seconds the holder holds at most: a wait without bound ends the test instead of hanging it
TABLE_LOCK = "LOCK TABLE catalog_settings IN ACCESS EXCLUSIVE MODE"  # on PostgreSQL; SQLite: its write lock


def test_a_lock_wait_that_runs_out_inside_a_savepoint_is_busy_not_a_bad_value(database_url: str) -> None:
    catalog = Catalog(database_url, lock_wait=1)
    try:
        with lock_held(database_url, TABLE_LOCK, HOLD), pytest.raises(CatalogBusyError, match="is busy"):
            with catalog.session() as s, savepoint(s):
                s.add(CatalogSetting(key="probe", value="written while the catalog was locked"))
        with catalog.session() as s:  # nothing of it was written
            assert s.get(CatalogSetting, "probe") is None
    finally:
        catalog.dispose()


def test_a_value_the_catalog_cannot_hold_is_undone_and_the_transaction_goes_on(database_url: str) -> None:
    """The other side of the same rule: a refused value is ``CatalogValueError`` and only its savepoint is undone."""
    catalog = Catalog(database_url)
    try:
        with catalog.session() as s:
            s.add(CatalogSetting(key="kept", value="before the refused one"))
            s.flush()
            with pytest.raises(CatalogValueError, match="the catalog cannot hold it"), savepoint(s):
                s.add(CatalogSetting(key="kept", value="a second row under the same key"))
        with catalog.session() as s:
            row = s.get(CatalogSetting, "kept")
            assert row is not None and row.value == "before the refused one"
    finally:
        catalog.dispose()
