"""Migration 0017 (a dataset row is one description), up and down with rows present, on SQLite and PostgreSQL.

Up: every recorded row gets the description hash a new manifest entry describing it alike gets (so the two meet on
one row), the links and counts stay, and one content hash may then hold several descriptions. Down: refused while
it does (the old schema could keep only one, and merging would relabel snapshots), done once it does not, with
content_hash UNIQUE again.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from modelarc.registry.datasets import attach_datasets
from modelarc.registry.db import (
    Catalog,
    _sqlite_engine,
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
)
from modelarc.registry.models import Dataset
from modelarc.registry.records import NewDataset, ObjectRecord

PILE = "a" * 64
# Recorded before 0017: every kind of field, NULLs, dates and text outside ASCII, as the old schema held them
OLD_ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "content_hash": PILE,
        "name": "the-pile",
        "version": "1.0",
        "source_url": "https://pile.example/",
        "license": "mixed",
        "size_bytes": 825 * 2**30,
        "records": 210_000_000,
        "tokens": 300_000_000_000,
        "time_start": dt.date(2020, 1, 1),
        "time_end": dt.date(2020, 12, 31),
        "notes": "dédupliqué – 🙂",
    },
    {"id": 2, "content_hash": "b" * 64, "name": "books"},
]


def _migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    """As registry/db.py's ``upgrade`` migrates: on SQLite in one transaction that holds the DDL too (pysqlite's
    default runs it outside, so a downgrade refused after another had copied a table left that copy behind)."""
    cfg = alembic_config(engine)
    migrating = _sqlite_engine(engine.url, transactional_ddl=True) if engine.dialect.name == "sqlite" else engine
    try:
        with migrating.begin() as conn:
            cfg.attributes["connection"] = conn
            (command.downgrade if down else command.upgrade)(cfg, revision)
    finally:
        if migrating is not engine:
            migrating.dispose()


def _insert_old_catalog(engine: Engine) -> None:
    """At 0016: a model, two snapshots with an attachment each, the rows above, the-pile used by both."""
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
        columns = list(OLD_ROWS[0])
        for row in OLD_ROWS:
            values = {c: row.get(c) for c in columns}
            conn.execute(
                text(
                    f"INSERT INTO datasets ({', '.join(columns)}, created_at, snapshot_count)"
                    f" VALUES ({', '.join(':' + c for c in columns)}, CURRENT_TIMESTAMP, :count)"
                ),
                {**values, "count": 2 if row["id"] == 1 else 1},
            )
        for link, (sid, did) in enumerate(((1, 1), (2, 1), (2, 2)), start=1):
            conn.execute(
                text(
                    "INSERT INTO snapshot_datasets (id, snapshot_id, dataset_id, attachment_id, role)"
                    " VALUES (:id, :s, :d, :s, 'pretrain')"
                ),
                {"id": link, "s": sid, "d": did},
            )
        if engine.dialect.name == "postgresql":  # rows given their ids: new rows must be numbered after them
            for table in ("models", "snapshots", "data_attachments", "datasets", "snapshot_datasets"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                    )
                )


def _links(engine: Engine) -> list[tuple[int, int, int]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, snapshot_id, dataset_id FROM snapshot_datasets ORDER BY id"))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def _unique_columns(engine: Engine) -> list[list[str]]:
    with engine.connect() as conn:
        return sorted(uq["column_names"] for uq in inspect(conn).get_unique_constraints("datasets"))


def _new(row: dict[str, Any], **changed: Any) -> NewDataset:
    """The manifest entry describing ``row`` (changed as given), as a new push gives it."""
    fields = {k: v for k, v in row.items() if k != "id"} | changed
    return NewDataset(role="pretrain", **fields)


def _attach(catalog: Catalog, snapshot_id: int, manifest: int, *datasets: NewDataset) -> list[bool]:
    """Attach ``datasets`` to the snapshot: for each, whether it added a row."""
    with catalog.session() as s:
        record = ObjectRecord(f"{manifest:064x}", 10, 10, "none")
        attached = attach_datasets(s, snapshot_id, record, "new", list(datasets))
        return [e.new for e in attached.entries]


def test_upgrade_fills_description_hashes_that_new_entries_meet_and_downgrade_refuses_then_restores(
    empty_database_url: str,
) -> None:
    engine = make_engine(empty_database_url)
    try:
        _migrate(engine, "0016")
        _insert_old_catalog(engine)
        _migrate(engine, "0017")
        assert _links(engine) == [(1, 1, 1), (2, 2, 1), (3, 2, 2)]  # set aside and back (SQLite), ids and all
        assert _unique_columns(engine) == [["description_hash"]]
    finally:
        engine.dispose()

    catalog = Catalog(empty_database_url)
    try:
        assert current_revision(catalog.engine) == head_revision()
        with catalog.session() as s:
            kept = {d.id: (d.name, d.license, d.notes, d.snapshot_count) for d in s.scalars(select(Dataset))}
        assert kept == {1: ("the-pile", "mixed", "dédupliqué – 🙂", 2), 2: ("books", None, None, 1)}
        # a new entry describing an old row exactly is that row: the backfill and the code hash alike
        assert _attach(catalog, 1, 1, _new(OLD_ROWS[0]), _new(OLD_ROWS[1])) == [False, False]
        # the same content hash described otherwise is a row of its own; the old row is untouched
        assert _attach(catalog, 1, 2, _new(OLD_ROWS[0], name="junk", license="do-not-use")) == [True]
        with catalog.session() as s:
            pile = s.scalars(select(Dataset).where(Dataset.content_hash == PILE).order_by(Dataset.id)).all()
            assert [(d.id, d.name, d.license) for d in pile] == [
                (1, "the-pile", "mixed"),
                (3, "junk", "do-not-use"),
            ]
    finally:
        catalog.dispose()

    engine = make_engine(empty_database_url)
    try:
        with pytest.raises(RuntimeError, match=f"cannot downgrade below 0017: .*{PILE} \\(2 descriptions\\)"):
            _migrate(engine, "0016", down=True)
        assert current_revision(engine) == head_revision()  # nothing changed
        with engine.begin() as conn:  # the operator removes the second description (and its link)
            conn.execute(text("DELETE FROM snapshot_datasets WHERE dataset_id = 3"))
            conn.execute(text("DELETE FROM datasets WHERE id = 3"))
        links = _links(engine)
        _migrate(engine, "0016", down=True)
        assert current_revision(engine) == "0016"
        assert _links(engine) == links
        assert _unique_columns(engine) == [["content_hash"]]
        with engine.connect() as conn:
            names = conn.execute(text("SELECT id, name, license FROM datasets ORDER BY id")).all()
        assert [tuple(r) for r in names] == [(1, "the-pile", "mixed"), (2, "books", None)]
        with pytest.raises(IntegrityError), engine.begin() as conn:  # one row per content hash again
            conn.execute(
                text(
                    "INSERT INTO datasets (content_hash, name, created_at, snapshot_count)"
                    " VALUES (:h, 'again', CURRENT_TIMESTAMP, 0)"
                ),
                {"h": PILE},
            )
        _migrate(engine, "0017")  # and up again: the same hashes as the first time
        with engine.connect() as conn:
            again = dict(conn.execute(text("SELECT id, description_hash FROM datasets")).all())
    finally:
        engine.dispose()
    catalog = Catalog(empty_database_url)
    try:
        assert _attach(catalog, 2, 3, _new(OLD_ROWS[0])) == [False]
        with catalog.session() as s:
            assert dict(s.execute(select(Dataset.id, Dataset.description_hash)).all()) == again
    finally:
        catalog.dispose()
