"""Writes in a savepoint that the catalog refuses because another transaction held a lock past MODELARC_LOCK_WAIT are
"busy" (``CatalogBusyError``: nothing written, try again), never "a value the catalog cannot hold"
(``CatalogValueError``). ``rebuild-catalog`` runs each record's writes in a savepoint and skips, with a warning, a
record whose values the catalog refuses (archive/rebuild.py): a busy catalog taken for a bad value would leave good
records out of the rebuilt catalog instead of failing the rebuild.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, make_url, text

from modelarc.errors import CatalogBusyError, CatalogValueError
from modelarc.registry.db import Catalog, savepoint
from modelarc.registry.models import CatalogSetting

HOLD = 20  # seconds the holder holds at most: a wait without bound ends the test instead of hanging it


@contextmanager
def _table_held(database_url: str) -> Iterator[None]:
    """``catalog_settings`` locked against writers by another connection, in a thread of its own, until the block
    ends: SQLite's one write lock, PostgreSQL's table lock."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        if database_url.startswith("sqlite"):
            conn = sqlite3.connect(make_url(database_url).database, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            taken.set()
            done.wait(HOLD)
            conn.execute("ROLLBACK")
            conn.close()
            return
        engine = create_engine(database_url)
        try:
            with engine.connect() as conn, conn.begin():
                conn.execute(text("LOCK TABLE catalog_settings IN ACCESS EXCLUSIVE MODE"))
                taken.set()
                done.wait(HOLD)
        finally:
            engine.dispose()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(30)
        yield
    finally:
        done.set()
        holder.join(30)


def test_a_lock_wait_that_runs_out_inside_a_savepoint_is_busy_not_a_bad_value(database_url: str) -> None:
    catalog = Catalog(database_url, lock_wait=1)
    try:
        with _table_held(database_url), pytest.raises(CatalogBusyError, match="is busy"):
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
