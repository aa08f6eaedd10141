"""A change that waits for a lock another transaction holds on the catalog gives up after MODELARC_LOCK_WAIT seconds
with one `error:` line, nothing written, and goes through once the holder is gone (registry/db.py ``_engine``).

On PostgreSQL recordings that declare parents take turns through an advisory lock held until commit
(registry/recording.py ``serialise_lineage_changes``); without a bound, one holder stuck inside its transaction (a
server whose bucket stopped answering while it wrote the snapshot record) stalled every such push on every server of
the catalog for as long as it stayed stuck. SQLite's one writer had a fixed 60 s busy timeout, and running out of it
was a SQLAlchemy traceback. Here the test itself is the stuck holder.
"""

from __future__ import annotations

import time
from pathlib import Path

from catalogkit import lock_held
from conftest import ArchiveCli
from modelfactory import tiny_gpt2, tiny_tensors, write_model

from modelarc.registry.recording import LINEAGE_LOCK_KEY

WAIT = 1  # MODELARC_LOCK_WAIT for the blocked command: the smallest the setting takes
HOLD = 15  # seconds the stuck holder holds at most


def test_a_push_behind_a_stuck_lock_holder_fails_in_one_line_and_goes_through_afterwards(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", tiny_gpt2(tmp_path / "base"), "acme/base:v1")
    child = write_model(tmp_path / "child", tiny_tensors(seed=7))
    before = arc.json("ls")
    arc.env["MODELARC_LOCK_WAIT"] = str(WAIT)
    with lock_held(database_url, "SELECT pg_advisory_xact_lock(:k)", HOLD, k=LINEAGE_LOCK_KEY):
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
