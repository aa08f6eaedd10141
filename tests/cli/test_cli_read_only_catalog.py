"""A catalog that refuses writes is one `error:` line naming it (registry/db.py ``Catalog._read_only``), never a
SQLAlchemy traceback: a read-only SQLite file, a PostgreSQL role or session that is read-only, a home folder
mounted read-only."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ArchiveCli
from modelfactory import tiny_gpt2
from sqlalchemy import make_url


def _read_only_url(url: str) -> str:
    """The same catalog, opened so that the database itself refuses every write."""
    if url.startswith("sqlite"):
        return f"sqlite:///file:{make_url(url).database}?mode=ro&uri=true"
    return url + ("&" if "?" in url else "?") + "options=-c%20default_transaction_read_only%3Don"


def test_commands_that_write_to_a_read_only_catalog_say_so_in_one_line(
    arc: ArchiveCli, tmp_path: Path, database_url: str
) -> None:
    arc("push", tiny_gpt2(tmp_path / "m"), "acme/tiny:v1")
    data = tmp_path / "data.yaml"
    data.write_text(
        "version: 1\ndatasets:\n  - {name: web, source: https://example.org/web, license: mixed, role: pretrain}\n"
    )
    ro = ArchiveCli(arc.home, _read_only_url(database_url))
    assert "acme/tiny" in ro("ls").stdout  # reading is fine
    for args in (
        ("tag", "acme/tiny:v1", "v2"),
        ("pull", "acme/tiny:v1", str(tmp_path / "out")),
        ("push", str(tmp_path / "m"), "acme/other:v1"),
        ("gc",),
        ("data", "attach", "acme/tiny:v1", str(data)),
    ):
        err = ro.fail(*args).stderr
        assert "is read-only" in err and "Traceback" not in err, (args, err)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare for a read-only bind mount")
def test_a_read_only_home_says_why_nothing_opens(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {**os.environ, "MODELARC_HOME": str(home)}
    env.pop("MODELARC_DATABASE_URL", None)
    main = "import sys; from modelarc.cli.main import main; sys.argv = ['modelarc', *sys.argv[1:]]; main()"
    subprocess.run([sys.executable, "-c", main, "init"], env=env, check=True, capture_output=True)
    sqlite3.connect(home / "registry.db").close()  # the last connection: no -wal or -shm left, as after any command
    assert not (home / "registry.db-shm").exists()
    mounted = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"',
         str(home), sys.executable, "-c", main, "ls"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    if "mount" in mounted.stderr and "error:" not in mounted.stderr:
        pytest.skip(f"no read-only bind mount here: {mounted.stderr.strip()}")
    assert mounted.returncode != 0 and "Traceback" not in mounted.stderr
    assert f"its folder {home} is read-only" in mounted.stderr, mounted.stderr
    assert "needs write access to the archive home" in mounted.stderr
