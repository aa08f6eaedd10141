"""Migration 0021 (a precision per time_range bound), up and down with rows present, on SQLite and PostgreSQL.

Up: every recorded bound keeps no precision (unknown: the manifest, in the store, is beyond a catalog migration's
reach; a rebuild re-derives it) and its description hash; the next entry that describes the row alike, at a day's
precision or at the month's or year's its manifest gave, meets it and gives it that precision. Once it has one, the
same dates at another precision are another description. Down: refused while two rows differ only in a
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


def test_upgrade_leaves_recorded_bounds_unknown_and_downgrade_refuses_rows_that_differ_only_in_precision(
    empty_database_url: str,
) -> None:
    engine = make_engine(empty_database_url)
    try:
        _migrate(engine, "0020")
        _insert_old_catalog(engine)
        hashes = [digest for _, digest in _rows(engine)]
        _migrate(engine, "0021")
        assert _rows(engine) == [(1, hashes[0], None, None), (2, hashes[1], None, None)]
        assert _links(engine) == [(1, 1, 1), (2, 1, 2)]
    finally:
        engine.dispose()

    catalog = Catalog(empty_database_url)
    try:
        assert current_revision(catalog.engine) == head_revision()
        # the same dates to the day: the recorded row, which takes that precision; then at a year's and a month's
        # precision: another description
        day = _pile(time_start_precision="day", time_end_precision="day")
        assert _attach(catalog, 1, 2, day) == [False]
        assert _rows(catalog.engine)[0] == (1, hashes[0], "day", "day")
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
        _migrate(engine, "0021")  # and up again: the precision 0020 could not keep is unknown again
        assert _rows(engine)[2][2:] == (None, None)
    finally:
        engine.dispose()


@pytest.mark.parametrize("precisions", [("year", "month"), ("day", "month")])
def test_a_recorded_row_is_found_again_by_its_entry_and_takes_the_manifests_precision(
    empty_database_url: str, precisions: tuple[str, str]
) -> None:
    """After the upgrade, the manifest that said 2010 .. 2020-06 attached again meets the row an older modelarc
    recorded for it (as 2010-01-01 .. 2020-06-01), not a second row "described otherwise" with the same data, and
    the row now says what the manifest said, as a rebuilt catalog does."""
    engine = make_engine(empty_database_url)
    try:
        _migrate(engine, "0020")
        _insert_old_catalog(engine)
        _migrate(engine, "0021")
    finally:
        engine.dispose()
    catalog = Catalog(empty_database_url)
    try:
        start, end = precisions
        entry = _pile(time_start_precision=start, time_end_precision=end)
        assert _attach(catalog, 1, 2, entry) == [False]
        assert _rows(catalog.engine)[0] == (1, description_hash_of(vars(entry)), start, end)
        assert _attach(catalog, 1, 3, entry) == [False]  # and again: the same row
    finally:
        catalog.dispose()
