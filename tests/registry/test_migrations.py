"""The schema is what the migrations make it, on SQLite and PostgreSQL alike."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from modelarc.registry.db import Catalog, current_revision, head_revision
from modelarc.registry.models import all_tables


# SQLite cannot reflect an expression index, so the comparison skips it there (and says so twice);
# test_expression_indexes_exist_on_sqlite looks for it instead.
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index")
def test_migrations_reach_head_and_match_the_models(empty_database_url: str) -> None:
    catalog = Catalog(empty_database_url)
    try:
        assert current_revision(catalog.engine) == head_revision()
        with catalog.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), all_tables())
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


def test_opening_twice_is_a_no_op(empty_database_url: str) -> None:
    Catalog(empty_database_url).dispose()
    catalog = Catalog(empty_database_url)
    assert current_revision(catalog.engine) == head_revision()
    catalog.dispose()


def test_upgrade_from_0001_keeps_existing_rows(empty_database_url: str) -> None:
    from catalogkit import migrate
    from sqlalchemy import text

    from modelarc.registry.db import make_engine

    engine = make_engine(empty_database_url)
    migrate(engine, "0001")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO models (namespace, name, created_at) VALUES ('acme', 'old', CURRENT_TIMESTAMP)")
        )
    engine.dispose()
    catalog = Catalog(empty_database_url)  # opening brings the schema to head
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


def test_upgrade_to_0009_counts_the_snapshots_of_each_dataset(empty_database_url: str) -> None:
    """The counts `data ls` reads are filled from the links already there; a snapshot attached twice counts once."""
    from catalogkit import migrate
    from sqlalchemy import text

    from modelarc.registry.db import make_engine

    engine = make_engine(empty_database_url)
    migrate(engine, "0008")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (id, namespace, name, created_at) VALUES (1, 'acme', 'm', CURRENT_TIMESTAMP)"
            )
        )
        for sid in (1, 2):
            conn.execute(
                text(
                    "INSERT INTO snapshots (id, model_id, digest, created_at, logical_bytes, stored_bytes_added,"
                    " file_count, tensor_count, parameter_count, dtypes, architecture)"
                    " VALUES (:id, 1, :digest, CURRENT_TIMESTAMP, 1, 0, 1, 1, 1, '{}', '{}')"
                ),
                {"id": sid, "digest": f"sha256:{sid:064x}"},
            )
            conn.execute(
                text(
                    "INSERT INTO data_attachments (id, snapshot_id, attached_at, actor)"
                    " VALUES (:id, :id, CURRENT_TIMESTAMP, 'old')"
                ),
                {"id": sid},
            )
        for did, name in ((1, "the-pile"), (2, "books"), (3, "unused")):
            conn.execute(
                text(
                    "INSERT INTO datasets (id, content_hash, name, created_at) VALUES (:id, :h, :n, CURRENT_TIMESTAMP)"
                ),
                {"id": did, "h": f"{did:064x}", "n": name},
            )
        # the-pile: snapshot 1 (linked twice, as a second attachment of the same manifest does) and snapshot 2
        for sid, did in ((1, 1), (1, 1), (2, 1), (2, 2)):
            conn.execute(
                text(
                    "INSERT INTO snapshot_datasets (snapshot_id, dataset_id, attachment_id, role)"
                    " VALUES (:s, :d, :s, 'pretrain')"
                ),
                {"s": sid, "d": did},
            )
    engine.dispose()
    catalog = Catalog(empty_database_url)
    try:
        with catalog.engine.connect() as conn:
            counts = dict(conn.execute(text("SELECT name, snapshot_count FROM datasets")).all())
        assert counts == {"the-pile": 2, "books": 1, "unused": 0}
    finally:
        catalog.dispose()


def test_expression_indexes_exist_on_sqlite(sqlite_url: str) -> None:
    """SQLite cannot reflect expression indexes, so the comparison with the models skips them there: look them up."""
    from sqlalchemy import Column, text

    expression_indexes = {
        ix.name
        for table in all_tables().tables.values()
        for ix in table.indexes
        if not all(isinstance(e, Column) for e in ix.expressions)
    }
    assert "ix_snapshots_license_created" in expression_indexes
    catalog = Catalog(sqlite_url)
    try:
        with catalog.engine.connect() as conn:
            made = dict(conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index'")).all())
        assert expression_indexes <= set(made), expression_indexes - set(made)
        assert "lower(license)" in made["ix_snapshots_license_created"]
    finally:
        catalog.dispose()
