"""Two recordings at once must not close a lineage cycle between them (beside test_lineage_cycles.py, which covers
one recording at a time).

Each recording checks the lineage and then adds its edge in a later statement. On PostgreSQL (READ COMMITTED) the
second recording's check did not see the first's uncommitted edge, so a -> b and b -> a both landed; on SQLite
too, whose reads before a transaction's first write wait for no writer. Recordings that declare parents now take
turns (registry/recording.py ``serialise_lineage_changes``). Here the first recording
is held open after its edge is in until the second is waiting (or, without the turn-taking, done), then committed.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from catalogkit import open_catalog
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from modelarc.errors import LineageCycleError
from modelarc.registry import queries as q
from modelarc.registry.db import Catalog
from modelarc.registry.models import Lineage, Snapshot
from modelarc.registry.recording import RecordedSnapshot, SnapshotRecording, record_snapshot
from modelarc.registry.records import NewSnapshot
from modelarc.registry.refs import Ref, SnapshotId

A = SnapshotId("sha256:" + hashlib.sha256(b"a").hexdigest())
B = SnapshotId("sha256:" + hashlib.sha256(b"b").hexdigest())
WAIT = 30.0  # seconds any step may take before the test fails instead of hanging


@pytest.fixture
def catalog(database_url: str) -> Iterator[Catalog]:
    yield from open_catalog(database_url)


def _recording(model: str, digest: SnapshotId, parent: str, parent_digest: SnapshotId) -> SnapshotRecording:
    """``model``@``digest`` declaring ``parent``@``parent_digest`` as its parent, received from another archive
    (a parent this catalog lacks is kept as declared, not an error)."""
    snapshot = NewSnapshot(
        digest=digest,
        logical_bytes=0,
        stored_bytes_added=0,
        files=(),
        parameter_count=0,
        dtypes={},
        architecture={},
        object_ids=frozenset(),
    )
    return SnapshotRecording(
        model=Ref(*model.split("/")),  # no tag: the race is lineage alone
        snapshot=snapshot,
        objects=(),
        signatures=(),
        actor="tester",
        action="transfer.commit",
        parents=[(Ref(*parent.split("/"), digest=parent_digest), "finetune")],
        lenient_parents=True,
    )


def _models(catalog: Catalog) -> None:
    """evil/a and evil/b exist already (creating a model takes a lock of its own, which would hide the race)."""
    with catalog.session() as s:
        q.get_or_create_model(s, "evil", "a")
        q.get_or_create_model(s, "evil", "b")


def _held_while_the_other_runs(
    catalog: Catalog, first: SnapshotRecording, second: SnapshotRecording
) -> tuple[RecordedSnapshot, RecordedSnapshot | Exception]:
    """Record ``first`` and keep its transaction open until ``second``, in another thread and connection, is
    waiting for it or has finished; then commit ``first`` and return both outcomes.

    PostgreSQL shows a session waiting for a lock (pg_stat_activity). SQLite waits inside the library, for the
    database's one write lock, which any write statement takes: the second counts as waiting once it starts one.
    """
    outcome: list[RecordedSnapshot | Exception] = []
    pid: list[int] = []
    started, writing = threading.Event(), threading.Event()

    def note_writes(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            writing.set()

    def run_second() -> None:
        try:
            with catalog.session() as s:
                connection = s.connection()
                if connection.dialect.name == "postgresql":
                    pid.append(int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()))
                else:
                    event.listen(connection, "before_cursor_execute", note_writes)
                started.set()
                outcome.append(record_snapshot(s, second))
        except Exception as exc:  # the refusal, seen by the test below
            outcome.append(exc)
        finally:
            started.set()

    with catalog.session() as s:
        recorded = record_snapshot(s, first)
        s.flush()
        other = threading.Thread(target=run_second, daemon=True)
        other.start()
        assert started.wait(WAIT)
        _until_waiting_or_done(catalog, other, pid, writing)
    other.join(WAIT)
    assert not other.is_alive(), "the second recording never finished"
    return recorded, outcome[0]


def _until_waiting_or_done(
    catalog: Catalog, other: threading.Thread, pid: list[int], writing: threading.Event
) -> None:
    deadline = time.monotonic() + WAIT
    while other.is_alive():
        if pid:
            with catalog.engine.connect() as watcher:
                waiting = watcher.execute(
                    text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid[0]}
                ).scalar()
            if waiting == "Lock":
                return
        elif writing.is_set():
            return
        assert time.monotonic() < deadline, "the second recording neither waited nor finished"
        other.join(0.01)


def _edges(s: Session) -> set[tuple[str, str]]:
    parent = Snapshot.__table__.alias("parent")
    child = Snapshot.__table__.alias("child")
    rows = s.execute(
        select(child.c.digest, parent.c.digest)
        .select_from(Lineage)
        .join(child, child.c.id == Lineage.child_id)
        .join(parent, parent.c.id == Lineage.parent_id)
    )
    return {(c, p) for c, p in rows}


def test_two_snapshots_recorded_at_once_each_declaring_the_other_first_claim_wins(catalog: Catalog) -> None:
    """a declares b and b declares a, both new, recorded at once: b, second, finds a and its claim on b, and is
    refused. Before, b did not see a, so both were kept declaring each other (a cycle once both were recorded)."""
    _models(catalog)
    first, second = _held_while_the_other_runs(
        catalog, _recording("evil/a", A, "evil/b", B), _recording("evil/b", B, "evil/a", A)
    )
    assert first.created and [p.snapshot for p in first.parents_unrecorded] == [B]
    assert isinstance(second, LineageCycleError), second
    assert "cannot be its own ancestor" in str(second)
    with catalog.session() as s:
        assert s.scalars(select(Snapshot.digest)).all() == [A]


def test_two_declared_edges_added_at_once_do_not_close_a_cycle(catalog: Catalog) -> None:
    """a and b each declare the other, unrecorded (as two recordings at once left them before the fix): each
    recorded again at once would add its edge. The second, once the first's a -> b is committed, leaves b -> a out
    and reports it."""
    _models(catalog)
    with catalog.session() as s:
        record_snapshot(s, _recording("evil/a", A, "evil/b", B))
    with catalog.session() as s:  # b's declaration is planted: recorded now, it is refused (a declares b)
        record_snapshot(s, replace(_recording("evil/b", B, "evil/a", A), parents=()))
    with catalog.session() as s:
        b = s.scalar(select(Snapshot).where(Snapshot.digest == B))
        assert b is not None
        b.unrecorded_parents = [{"model": "evil/a", "snapshot": A, "relation": "finetune"}]
    first, second = _held_while_the_other_runs(
        catalog, _recording("evil/a", A, "evil/b", B), _recording("evil/b", B, "evil/a", A)
    )
    assert [p.snapshot for p in first.parents_added] == [B]
    assert not isinstance(second, Exception), second
    assert [p.snapshot for p in second.parents_refused] == [A] and not second.parents_added
    with catalog.session() as s:
        assert _edges(s) == {(A, B)}
