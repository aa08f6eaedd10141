"""The catalog's migration commits whole or not at all (registry/db.py ``upgrade``): an `init` killed half-way
leaves a catalog the next command opens, and two first opens at once both succeed.

On SQLite, pysqlite used to commit each CREATE TABLE as it ran, so a Ctrl-C during the first `init` left tables
without Alembic's version stamp, and every later command failed with "table audit_events already exists".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# `modelarc init` in a child that kills itself (SIGKILL: no Python clean-up, as a power cut or `kill -9`) right
# after its Nth CREATE TABLE has gone to the database: the fault is injected through SQLAlchemy's event hook.
KILLED_INIT = """
import os, signal, sys
from sqlalchemy import Engine, event
after = int(sys.argv[1])
created = 0
@event.listens_for(Engine, "after_cursor_execute")
def _kill(conn, cursor, statement, *args):
    global created
    if statement.lstrip().upper().startswith("CREATE TABLE"):
        created += 1
        if created == after:
            os.kill(os.getpid(), signal.SIGKILL)
from modelarc.cli.main import main
sys.argv = ["modelarc", "init"]
main()
"""


def _env(home: Path, database_url: str) -> dict[str, str]:
    return {**os.environ, "MODELARC_HOME": str(home), "MODELARC_DATABASE_URL": database_url}


def _modelarc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from modelarc.cli.main import main; sys.argv = ['modelarc', *sys.argv[1:]]; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=180
    )


@pytest.mark.parametrize("after", [3, 12, 25])
def test_init_killed_mid_migration_leaves_a_catalog_the_next_command_opens(
    tmp_path: Path, empty_database_url: str, after: int
) -> None:
    env = _env(tmp_path / "home", empty_database_url)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_INIT, str(after)], env=env, capture_output=True, text=True, timeout=180
    )
    assert killed.returncode == -signal.SIGKILL, f"the migration was not killed half-way:\n{killed.stderr}"
    listed = _modelarc(env, "ls")
    assert listed.returncode == 0, listed.stderr
    again = _modelarc(env, "init")
    assert again.returncode == 0, again.stderr


def test_two_first_inits_at_once_both_succeed(tmp_path: Path, empty_database_url: str) -> None:
    code = "import sys; from modelarc.cli.main import main; sys.argv = ['modelarc', 'init']; main()"
    for round in range(3):  # a fresh home each round: its key is recorded by both at once too (registry/keys.py)
        env = _env(tmp_path / f"home-{round}", empty_database_url)
        if empty_database_url.startswith("sqlite"):
            env["MODELARC_DATABASE_URL"] = f"sqlite:///{tmp_path / f'home-{round}' / 'registry.db'}"
        inits = [
            subprocess.Popen(
                [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outcomes = [(p.wait(timeout=180), p.stderr.read() if p.stderr else "") for p in inits]
        for rc, err in outcomes:
            assert rc == 0 and "Traceback" not in err, err
        listed = _modelarc(env, "ls")
        assert listed.returncode == 0, listed.stderr
