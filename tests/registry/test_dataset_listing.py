"""Listing datasets a page at a time, and the count of snapshots each dataset row keeps; SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from catalogkit import open_catalog
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from modelarc.errors import UsageError
from modelarc.registry.datasets import attach_datasets, list_datasets
from modelarc.registry.db import Catalog
from modelarc.registry.models import Dataset, Model, Snapshot
from modelarc.registry.records import NewDataset, ObjectRecord


@pytest.fixture
def catalog(database_url: str) -> Iterator[Catalog]:
    yield from open_catalog(database_url)


@pytest.fixture
def pg_catalog(postgresql_url: str) -> Iterator[Catalog]:
    yield from open_catalog(postgresql_url)


def _snapshot(s: Session) -> int:
    model = Model(namespace="acme", name="m")
    s.add(model)
    s.flush()
    snap = Snapshot(
        model_id=model.id,
        digest="sha256:" + "0" * 64,
        logical_bytes=1,
        file_count=1,
        tensor_count=1,
        parameter_count=1,
    )
    s.add(snap)
    s.flush()
    return snap.id


def _manifest(n: int) -> ObjectRecord:
    return ObjectRecord(f"{n:064x}", 10, 10, "raw")


def _names(catalog: Catalog, limit: int, cursor: str | None = None) -> tuple[list[str], str | None]:
    with catalog.session() as s:
        page = list_datasets(s, limit=limit, cursor=cursor)
    return [d.name for d in page.rows], page.next_cursor


def test_a_dataset_added_while_paging_does_not_shift_the_next_page(catalog: Catalog) -> None:
    with catalog.session() as s:
        s.add_all(Dataset(content_hash=f"{i:064x}", name=name) for i, name in enumerate("bdfh"))
    first, cursor = _names(catalog, 2)
    assert first == ["b", "d"] and cursor is not None
    with catalog.session() as s:  # one before the cursor, one after it
        s.add_all([Dataset(content_hash="a" * 64, name="a"), Dataset(content_hash="e" * 64, name="e")])
    assert _names(catalog, 2, cursor)[0] == ["e", "f"]  # not "d" again, and "a" is behind the cursor
    rest, last = _names(catalog, 10, cursor)
    assert rest == ["e", "f", "h"] and last is None


def test_versions_of_one_name_page_by_their_catalog_key(catalog: Catalog) -> None:
    with catalog.session() as s:
        s.add_all(Dataset(content_hash=f"{i:064x}", name="pile", version=str(i)) for i in range(5))
    seen: list[str | None] = []
    cursor = None
    while True:
        with catalog.session() as s:
            page = list_datasets(s, limit=2, cursor=cursor)
        seen += [d.version for d in page.rows]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == ["0", "1", "2", "3", "4"]


def test_limit_out_of_range_is_a_usage_error(catalog: Catalog) -> None:
    with catalog.session() as s, pytest.raises(UsageError, match="limit must be between 1 and"):
        list_datasets(s, limit=0)
    with catalog.session() as s, pytest.raises(UsageError, match="limit must be between 1 and"):
        list_datasets(s, limit=2**63)


def test_a_dataset_counts_each_snapshot_once(catalog: Catalog) -> None:
    pile = NewDataset(content_hash="a" * 64, name="the-pile", role="pretrain")
    with catalog.session() as s:
        sid = _snapshot(s)
        attach_datasets(s, sid, _manifest(1), "t", [pile, NewDataset("a" * 64, "the-pile", "eval")])
        attach_datasets(s, sid, _manifest(2), "t", [pile])
    with catalog.session() as s:
        assert [(d.name, d.snapshots) for d in list_datasets(s).rows] == [("the-pile", 1)]


def test_two_attachments_at_once_count_a_snapshot_once(pg_catalog: Catalog) -> None:
    """PostgreSQL: two transactions attach the same dataset to the same snapshot at once. The second waits for the
    first (a row lock on the snapshot), then sees its link; without the lock both would count the snapshot."""
    catalog = pg_catalog
    pile = NewDataset(content_hash="a" * 64, name="the-pile", role="pretrain")
    with catalog.session() as s:
        sid = _snapshot(s)
        s.add(Dataset(content_hash=pile.content_hash, name=pile.name))  # known: neither attachment inserts it
    failures: list[BaseException] = []

    def second() -> None:
        try:
            with catalog.session() as s:
                attach_datasets(s, sid, _manifest(2), "second", [pile])
        except BaseException as exc:  # noqa: BLE001 (reported by the main thread)
            failures.append(exc)

    with catalog.session() as first:
        attach_datasets(first, sid, _manifest(1), "first", [pile])
        worker = threading.Thread(target=second)
        worker.start()
        _wait_until_blocked_or_done(catalog, worker)
    worker.join(timeout=60)
    assert not worker.is_alive() and failures == []
    with catalog.session() as s:
        assert s.scalar(select(Dataset.snapshot_count)) == 1


def _wait_until_blocked_or_done(catalog: Catalog, worker: threading.Thread) -> None:
    """Until another session of this database waits on a lock (or the worker ended): then the first may commit."""
    deadline = time.monotonic() + 30
    with catalog.engine.connect() as conn:
        while worker.is_alive() and time.monotonic() < deadline:
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar()
            if waiting:
                return
            conn.rollback()  # a fresh snapshot of pg_stat_activity next time
            time.sleep(0.01)
