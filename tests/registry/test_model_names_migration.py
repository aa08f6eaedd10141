"""Migration 0016 (an index on lower(namespace), lower(name)), up and down, on SQLite and PostgreSQL.

It must build on a catalog that already holds two models whose names differ only in case (archives made before
such pairs were refused): the index is not unique, and both rows stay as they were.
"""

from __future__ import annotations

from catalogkit import migrate, migrated
from sqlalchemy import Engine, inspect, text

from modelarc.registry.db import Catalog, current_revision, head_revision, make_engine


def _indexes(engine: Engine) -> set[str]:
    """The models table's index names (SQLite cannot reflect an expression index: read its schema instead)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'models'")
            )
            return set(rows.scalars())
        return {str(ix["name"]) for ix in inspect(conn).get_indexes("models")}


def _models(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(ns, n) for ns, n in conn.execute(text("SELECT namespace, name FROM models ORDER BY id"))]


def test_upgrade_indexes_names_ignoring_case_over_an_existing_pair_and_downgrade_drops_it(
    empty_database_url: str,
) -> None:
    engine = make_engine(empty_database_url)
    pair = [("acme", "tiny"), ("Acme", "tiny"), ("other", "x")]
    try:
        with migrated(engine, "0015") as conn:
            for ns, name in pair:
                conn.execute(
                    text(
                        "INSERT INTO models (namespace, name, created_at) VALUES (:ns, :n, CURRENT_TIMESTAMP)"
                    ),
                    {"ns": ns, "n": name},
                )
        assert "ix_models_lower_name" not in _indexes(engine)
        migrate(engine, "0016")
        assert "ix_models_lower_name" in _indexes(engine)
        assert _models(engine) == pair  # the pair is kept: the index is not unique
        with engine.connect() as conn:  # and it answers the lookup it is for
            found = conn.execute(
                text("SELECT namespace FROM models WHERE lower(namespace) = 'acme' AND lower(name) = 'tiny'")
            )
            assert sorted(found.scalars()) == ["Acme", "acme"]
        migrate(engine, "0015", down=True)
        assert "ix_models_lower_name" not in _indexes(engine)
        assert _models(engine) == pair
    finally:
        engine.dispose()
    catalog = Catalog(empty_database_url)  # opening brings it to head again
    try:
        assert current_revision(catalog.engine) == head_revision()  # 0016 or a later head
        assert "ix_models_lower_name" in _indexes(catalog.engine)
        assert _models(catalog.engine) == pair
    finally:
        catalog.dispose()
