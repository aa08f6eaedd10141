"""Object rows recorded by two transactions at once (two servers on one catalog); SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from catalogkit import open_catalog
from sqlalchemy import event, func, select

from modelarc.registry.db import Catalog
from modelarc.registry.queries import record_objects
from modelarc.registry.records import ObjectRecord
from modelarc.registry.store_models import StoredObject


@pytest.fixture
def catalog(database_url: str) -> Iterator[Catalog]:
    yield from open_catalog(database_url)


def test_two_recordings_of_one_new_object_at_once_both_commit(catalog: Catalog) -> None:
    shared = ObjectRecord("ab" * 32, 10, 12, "zstd")
    first = catalog._sessions()
    first.begin()
    record_objects(first, [shared])  # inserted, not yet committed: the second cannot see it
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with catalog.session() as s:
                record_objects(s, [shared, ObjectRecord("cd" * 32, 1, 17, "raw")])
        except BaseException as exc:  # reported to the test below
            failures.append(exc)

    other = threading.Thread(target=second)
    inserting = threading.Event()

    def watch(conn: object, cursor: object, statement: str, *args: object) -> None:
        if threading.current_thread() is other and statement.startswith("INSERT INTO objects"):
            inserting.set()  # the second has looked and found nothing: its insert now waits for the first

    event.listen(catalog.engine, "before_cursor_execute", watch)
    other.start()
    assert inserting.wait(timeout=60)
    first.commit()
    first.close()
    other.join(timeout=60)
    assert not other.is_alive() and failures == []
    with catalog.session() as s:
        assert s.scalar(select(func.count()).select_from(StoredObject)) == 2


def test_objects_found_bad_are_read_through_the_check_index(sqlite_url: str) -> None:
    """A push asks which of its objects scrub found bad: on a store of a million objects, a scan of the table per
    push would cost seconds. The plan must name the index (revision 0019), and the answer must hold the bad ones."""
    from sqlalchemy import text

    from modelarc.registry.integrity import found_bad_among, objects_found_bad, record_checks

    catalog = Catalog(sqlite_url)
    try:
        ids = [f"{i:064x}" for i in range(2000)]
        with catalog.session() as s:
            record_objects(s, [ObjectRecord(oid, 10, 12, "zstd") for oid in ids])
            record_checks(s, {ids[7]: "corrupt", ids[1500]: "missing", ids[9]: "ok"})
        with catalog.session() as s:
            assert objects_found_bad(s) == {ids[7]: "corrupt", ids[1500]: "missing"}
            assert found_bad_among(s, ids) == {ids[7], ids[1500]}
        with catalog.engine.connect() as conn:
            plan = " ".join(
                str(row[-1])
                for row in conn.execute(
                    text("EXPLAIN QUERY PLAN SELECT id FROM objects WHERE last_check IN ('corrupt', 'missing')")
                )
            )
        assert "ix_objects_last_check" in plan, plan
    finally:
        catalog.dispose()
