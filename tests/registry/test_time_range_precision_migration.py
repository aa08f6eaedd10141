"""Migration 0021 (a precision per time_range bound), up and down with rows present, on SQLite and PostgreSQL.

Up: every recorded bound is marked 'day' (the manifest, in the store, is beyond a catalog migration's reach; a rebuild
re-derives it) and keeps its description hash, so an entry describing the row alike still meets it, while the same
dates at a month's or a year's precision are another description. Down: refused while two rows differ only in a
bound's precision, done once they do not, the coarse rows hashed as revision 0020 hashes them.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine, inspect, text
from test_dataset_descriptions_migration import _attach, _links, _migrate

from modelarc.registry.dataset_identity import description_hash_of
from modelarc.registry.db import Catalog, current_revision, head_revision, make_engine
from modelarc.registry.records import NewDataset

# Recorded at 0020: the-pile with dates (its manifest said 2010 .. 2020-06, recorded as their first days), books none
OLD_ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "content_hash": "a" * 64,
        "name": "the-pile",
        "time_start": dt.date(2010, 1, 1),
        "time_end": dt.date(2020, 6, 1),
    },
    {"id": 2, "content_hash": "b" * 64, "name": "books"},
]


def _insert_old_catalog(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (id, namespace, name, created_at) VALUES (1, 'acme', 'm', CURRENT_TIMESTAMP)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO snapshots (id, model_id, digest, created_at, logical_bytes, stored_bytes_added,"
                " file_count, tensor_count, parameter_count, dtypes, architecture)"
                " VALUES (1, 1, :digest, CURRENT_TIMESTAMP, 1, 0, 1, 1, 1, '{}', '{}')"
            ),
            {"digest": f"sha256:{1:064x}"},
        )
        conn.execute(
            text(
                "INSERT INTO data_attachments (id, snapshot_id, attached_at, actor)"
                " VALUES (1, 1, CURRENT_TIMESTAMP, 'old')"
            )
        )
        for row in OLD_ROWS:
            values = {c: row.get(c) for c in OLD_ROWS[0]}
            conn.execute(
                text(
                    "INSERT INTO datasets (id, content_hash, name, time_start, time_end, description_hash,"
                    " created_at, snapshot_count) VALUES (:id, :content_hash, :name, :time_start, :time_end,"
                    " :digest, CURRENT_TIMESTAMP, 1)"
                ),
                {**values, "digest": description_hash_of(values)},
            )
            conn.execute(
                text(
                    "INSERT INTO snapshot_datasets (id, snapshot_id, dataset_id, attachment_id, role)"
                    " VALUES (:id, 1, :id, 1, 'pretrain')"
                ),
                {"id": row["id"]},
            )
        if engine.dialect.name == "postgresql":  # rows given their ids: new rows must be numbered after them
            for table in ("models", "snapshots", "data_attachments", "datasets", "snapshot_datasets"):
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                    )
                )


def _rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns("datasets")}
        precisions = ", time_start_precision, time_end_precision" if "time_end_precision" in columns else ""
        query = f"SELECT id, description_hash{precisions} FROM datasets ORDER BY id"
        return [tuple(r) for r in conn.execute(text(query))]


def _pile(**changed: Any) -> NewDataset:
    fields = {k: v for k, v in OLD_ROWS[0].items() if k != "id"}
    return NewDataset(role="pretrain", **(fields | changed))


def test_upgrade_marks_recorded_bounds_day_and_downgrade_refuses_rows_that_differ_only_in_precision(
    empty_database_url: str,
) -> None:
    engine = make_engine(empty_database_url)
    try:
        _migrate(engine, "0020")
        _insert_old_catalog(engine)
        hashes = [digest for _, digest in _rows(engine)]
        _migrate(engine, "0021")
        assert _rows(engine) == [(1, hashes[0], "day", "day"), (2, hashes[1], None, None)]
        assert _links(engine) == [(1, 1, 1), (2, 1, 2)]
    finally:
        engine.dispose()

    catalog = Catalog(empty_database_url)
    try:
        assert current_revision(catalog.engine) == head_revision()
        # the same dates to the day: the recorded row; at a year's and a month's precision: another description
        day = _pile(time_start_precision="day", time_end_precision="day")
        assert _attach(catalog, 1, 2, day) == [False]
        assert _attach(catalog, 1, 3, _pile(time_start_precision="year", time_end_precision="month")) == [
            True
        ]
    finally:
        catalog.dispose()

    engine = make_engine(empty_database_url)
    try:
        with pytest.raises(RuntimeError, match=r"cannot downgrade below 0021: datasets \(ids 3\)"):
            _migrate(engine, "0020", down=True)
        assert current_revision(engine) == head_revision()  # nothing changed
        with (
            engine.begin() as conn
        ):  # the operator removes the day row's twin; a month row clashing with none stays
            conn.execute(text("DELETE FROM snapshot_datasets WHERE dataset_id = 3"))
            conn.execute(text("DELETE FROM datasets WHERE id = 3"))
    finally:
        engine.dispose()
    catalog = Catalog(empty_database_url)
    try:
        books = NewDataset(
            "b" * 64, "books", "eval", time_end=dt.date(2021, 5, 1), time_end_precision="month"
        )
        assert _attach(catalog, 1, 4, books) == [True]
    finally:
        catalog.dispose()

    engine = make_engine(empty_database_url)
    try:
        _migrate(engine, "0020", down=True)
        assert current_revision(engine) == "0020"
        rows = _rows(engine)
        # the month row hashed as 0020's modelarc hashes what it records for "2021-05": 2021-05-01
        as_0020 = description_hash_of(
            {"content_hash": "b" * 64, "name": "books", "time_end": dt.date(2021, 5, 1)}
        )
        assert rows[:2] == [(1, hashes[0]), (2, hashes[1])] and rows[2][1] == as_0020
        _migrate(engine, "0021")  # and up again: the precision 0020 could not keep is a day's
        assert _rows(engine)[2][2:] == (None, "day")
    finally:
        engine.dispose()
