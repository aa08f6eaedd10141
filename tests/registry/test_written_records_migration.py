"""Migration 0015 (written_records), up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

from catalogkit import migrated
from sqlalchemy import inspect, text

from modelarc.registry.db import Catalog, current_revision, head_revision, make_engine


def test_upgrade_notes_no_record_and_downgrade_drops_the_notes(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    key = "records/20260102T030405123456Z-" + "a" * 64 + ".json"
    try:
        with migrated(engine, "0014") as conn:
            assert "written_records" not in inspect(conn).get_table_names()
        with migrated(engine, "0015") as conn:
            # the catalog cannot tell which of the store's records it wrote before now: none is noted
            assert conn.execute(text("SELECT COUNT(*) FROM written_records")).scalar() == 0
            conn.execute(text("INSERT INTO written_records (key) VALUES (:k)"), {"k": key})
            assert conn.execute(text("SELECT key FROM written_records")).scalars().all() == [key]
        with migrated(engine, "0014", down=True) as conn:
            assert "written_records" not in inspect(conn).get_table_names()
    finally:
        engine.dispose()
    catalog = Catalog(empty_database_url)  # opening brings it to head again
    try:
        assert current_revision(catalog.engine) == head_revision()
        with catalog.engine.connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM written_records")).scalar() == 0
    finally:
        catalog.dispose()
