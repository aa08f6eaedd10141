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


def test_upgrade_from_0001_keeps_existing_rows(database_url: str) -> None:
    from alembic import command
    from sqlalchemy import text

    from modelarc.registry.db import alembic_config, make_engine

    engine = make_engine(database_url)
    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO models (namespace, name, created_at) VALUES ('acme', 'old', CURRENT_TIMESTAMP)"))
    engine.dispose()
    catalog = Catalog(database_url)  # opening brings the schema to head
    try:
        assert current_revision(catalog.engine) == head_revision() != "0001"
        with catalog.engine.connect() as conn:
            assert conn.execute(text("SELECT name FROM models")).scalars().all() == ["old"]
    finally:
        catalog.dispose()


def test_head_revision_read_from_file_names_is_alembics_head() -> None:
    """Catalog opens compare against the file-name head without importing Alembic: it must be Alembic's head."""
    from alembic.script import ScriptDirectory

    from modelarc.registry.db import alembic_config

    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()
