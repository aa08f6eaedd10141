"""Revision 0023 dates lineage edges (``lineage.created_at``) so ``--as-of`` can leave out those recorded later:
the edges a catalog already holds take their child's creation time, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime as dt

from catalogkit import migrate
from sqlalchemy import inspect, text

from modelarc.registry.db import Catalog, current_revision, head_revision, make_engine


def test_upgrade_to_0023_dates_each_edge_by_its_child(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    migrate(engine, "0022")
    times = {1: dt.datetime(2020, 1, 1, 8), 2: dt.datetime(2021, 6, 2, 9, 30), 3: dt.datetime(2022, 3, 4, 10)}
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (id, namespace, name, created_at) VALUES (1, 'acme', 'm', CURRENT_TIMESTAMP)"
            )
        )
        for sid, at in times.items():
            conn.execute(
                text(
                    "INSERT INTO snapshots (id, model_id, digest, created_at, logical_bytes, stored_bytes_added,"
                    " file_count, tensor_count, parameter_count, dtypes, architecture)"
                    " VALUES (:id, 1, :digest, :at, 1, 0, 1, 1, 1, '{}', '{}')"
                ),
                {"id": sid, "digest": f"sha256:{sid:064x}", "at": at},
            )
        # 2 and 3 derive from 1; 3 from 2 as well (a merge)
        for child, parent in ((2, 1), (3, 1), (3, 2)):
            conn.execute(
                text("INSERT INTO lineage (child_id, parent_id, relation) VALUES (:c, :p, 'finetune')"),
                {"c": child, "p": parent},
            )
    engine.dispose()
    catalog = Catalog(empty_database_url)  # opening brings the schema to head
    try:
        assert current_revision(catalog.engine) == head_revision()
        with catalog.engine.connect() as conn:
            rows = conn.execute(text("SELECT child_id, parent_id, created_at FROM lineage")).all()
            column = next(c for c in inspect(conn).get_columns("lineage") if c["name"] == "created_at")
        dated = {
            (c, p): at if isinstance(at, dt.datetime) else dt.datetime.fromisoformat(at) for c, p, at in rows
        }
        assert dated == {(2, 1): times[2], (3, 1): times[3], (3, 2): times[3]}
        assert column["nullable"] is False
    finally:
        catalog.dispose()


def test_0023_downgrades_and_upgrades_again(empty_database_url: str) -> None:
    Catalog(empty_database_url).dispose()
    engine = make_engine(empty_database_url)
    migrate(engine, "0022", down=True)
    with engine.connect() as conn:
        assert "created_at" not in {c["name"] for c in inspect(conn).get_columns("lineage")}
    engine.dispose()
    catalog = Catalog(empty_database_url)
    try:
        assert current_revision(catalog.engine) == head_revision()
    finally:
        catalog.dispose()


def test_an_edge_written_without_a_date_is_dated_when_written(empty_database_url: str) -> None:
    """A server of the version before 0023, still running while a shared catalog is migrated, inserts edges with
    no ``created_at``: the column's default dates them (UTC) instead of failing its commit."""
    catalog = Catalog(empty_database_url)
    try:
        before = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0) - dt.timedelta(seconds=1)
        with catalog.engine.begin() as conn:
            conn.execute(
                text("INSERT INTO models (id, namespace, name, created_at) VALUES (1, 'acme', 'm', :at)"),
                {"at": before},
            )
            for sid in (1, 2):
                conn.execute(
                    text(
                        "INSERT INTO snapshots (id, model_id, digest, created_at, logical_bytes, stored_bytes_added,"
                        " file_count, tensor_count, parameter_count, dtypes, architecture)"
                        " VALUES (:id, 1, :digest, :at, 1, 0, 1, 1, 1, '{}', '{}')"
                    ),
                    {"id": sid, "digest": f"sha256:{sid:064x}", "at": before},
                )
            conn.execute(
                text("INSERT INTO lineage (child_id, parent_id, relation) VALUES (2, 1, 'finetune')")
            )
            (at,) = conn.execute(text("SELECT created_at FROM lineage")).one()
        at = at if isinstance(at, dt.datetime) else dt.datetime.fromisoformat(at)
        after = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=1)
        assert before <= at.replace(tzinfo=None) <= after  # UTC, as every time in the catalog
    finally:
        catalog.dispose()
