"""The schema is what the migrations make it, on SQLite and PostgreSQL alike."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from modelarc.registry.db import Catalog, current_revision, head_revision
from modelarc.registry.models import Base


def test_migrations_reach_head_and_match_the_models(database_url: str) -> None:
    catalog = Catalog(database_url)
    try:
        assert current_revision(catalog.engine) == head_revision()
        with catalog.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == [], f"models and migrations disagree; write a migration: {diff}"
        tables = set(inspect(catalog.engine).get_table_names())
        assert {
            "models",
            "snapshots",
            "tags",
            "tag_history",
            "files",
            "tensors",
            "objects",
            "signatures",
            "keys",
            "audit_events",
            "lineage",
            "snapshot_objects",
        } <= tables
    finally:
        catalog.dispose()


def test_opening_twice_is_a_no_op(database_url: str) -> None:
    Catalog(database_url).dispose()
    catalog = Catalog(database_url)
    assert current_revision(catalog.engine) == head_revision()
    catalog.dispose()
