"""Revision 0020 widens objects.last_check, which SQLite can only do by copying the table: with foreign keys
enforced, dropping the old `objects` under snapshot_objects' references failed, so an archive holding any snapshot
could not be upgraded (or downgraded). The migration engine turns them off, as SQLite's procedure for such changes
says, and checks every reference before it commits."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from modelfactory import tiny_tensors, write_model
from sqlalchemy import text

from modelarc.archive.repository import Archive
from modelarc.registry.db import Catalog, _sqlite_engine, alembic_config, current_revision, head_revision


def _migrate_down(url: str, revision: str) -> None:
    catalog = Catalog(url)
    migrating = _sqlite_engine(catalog.engine.url, transactional_ddl=True)
    try:
        with migrating.begin() as conn:
            cfg = alembic_config(catalog.engine)
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
    finally:
        migrating.dispose()
        catalog.dispose()


def test_an_archive_with_snapshots_migrates_through_0020_both_ways(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELARC_DATABASE_URL", sqlite_url)
    archive, _ = Archive.init(tmp_path / "home")
    archive.push(write_model(tmp_path / "m", tiny_tensors()), "acme/m:v1")
    archive.close()
    _migrate_down(sqlite_url, "0019")
    catalog = Catalog(sqlite_url)  # opening upgrades to head
    try:
        assert current_revision(catalog.engine) == head_revision()
        with catalog.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
            referenced = conn.execute(text("SELECT count(*) FROM snapshot_objects")).scalar()
            objects = conn.execute(text("SELECT count(*) FROM objects")).scalar()
            indexes = {row[1] for row in conn.exec_driver_sql("PRAGMA index_list('objects')")}
        assert referenced and objects and "ix_objects_last_check" in indexes
    finally:
        catalog.dispose()
    reopened = Archive.open(tmp_path / "home")
    try:
        assert reopened.verify("acme/m:v1")  # the snapshot and its objects are all still there
    finally:
        reopened.close()
