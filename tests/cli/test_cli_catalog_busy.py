"""A change that waits for a lock another transaction holds on the catalog gives up after MODELARC_LOCK_WAIT seconds
with one `error:` line, nothing written, and goes through once the holder is gone (registry/db.py ``_engine``).

On PostgreSQL recordings that declare parents take turns through an advisory lock held until commit
(registry/recording.py ``serialise_lineage_changes``); without a bound, one holder stuck inside its transaction (a
server whose bucket stopped answering while it wrote the snapshot record) stalled every such push on every server of
the catalog for as long as it stayed stuck. SQLite's one writer had a fixed 60 s busy timeout, and running out of it
was a SQLAlchemy traceback. Here the test itself is the stuck holder.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import ArchiveCli
from modelfactory import tiny_gpt2, tiny_tensors, write_model
from sqlalchemy import create_engine, make_url, text

from modelarc.registry.recording import LINEAGE_LOCK_KEY

WAIT = 1  # MODELARC_LOCK_WAIT for the blocked command: the smallest the setting takes
HOLD = 15  # seconds the stuck holder holds at most


@contextmanager
def _held(database_url: str) -> Iterator[None]:
    """The lock a push declaring a parent needs, held by another connection (in a thread of its own) until the block
    ends, or for ``HOLD`` seconds at most: a push that waits without bound then goes through, and the test fails
    instead of hanging."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        if database_url.startswith("sqlite"):
            conn = sqlite3.connect(make_url(database_url).database, isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")  # the one writer
            taken.set()
            done.wait(HOLD)
            conn.execute("ROLLBACK")
            conn.close()
            return
        engine = create_engine(database_url)
        try:
            with engine.connect() as conn, conn.begin():
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LINEAGE_LOCK_KEY})
                taken.set()
                done.wait(HOLD)
        finally:
            engine.dispose()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert taken.wait(30)
        yield
    finally:
        done.set()
        holder.join(30)


def test_a_push_behind_a_stuck_lock_holder_fails_in_one_line_and_goes_through_afterwards(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", tiny_gpt2(tmp_path / "base"), "acme/base:v1")
    child = write_model(tmp_path / "child", tiny_tensors(seed=7))
    before = arc.json("ls")
    arc.env["MODELARC_LOCK_WAIT"] = str(WAIT)
    with _held(database_url):
        started = time.monotonic()
        failed = arc.fail(
            "push", child, "acme/child:v1", "--parent", "acme/base:v1", "--relation", "finetune"
        )
        waited = time.monotonic() - started
    assert failed.exit_code == 1, failed.output
    line = failed.stderr.strip().splitlines()[-1]
    assert (
        "is busy" in line and "MODELARC_LOCK_WAIT" in line and "nothing of this change was written" in line
    ), line
    assert waited >= WAIT * 0.9, waited  # it did wait its turn first
    assert waited < HOLD, waited  # and not until the holder let go (SQLite waited 60 s, PostgreSQL for ever)
    assert arc.json("ls") == before
    arc("push", child, "acme/child:v1", "--parent", "acme/base:v1", "--relation", "finetune")
    assert [p["model"] for p in arc.json("show", "acme/child:v1")["parents"]] == ["acme/base"]
