"""Homes, a served archive and small helpers shared by the transfer tests (tests/transfer/)."""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from catalogkit import sqlite_copy
from click.testing import CliRunner, Result

from modelarc.archive.repository import Archive
from modelarc.cli.main import cli


@dataclass
class Home:
    path: Path
    runner: CliRunner

    @property
    def env(self) -> dict[str, str]:
        return {
            "MODELARC_HOME": str(self.path),
            "MODELARC_DATABASE_URL": f"sqlite:///{self.path / 'registry.db'}",
            "MODELARC_ACTOR": self.path.name,
        }

    def __call__(self, *args: object, ok: bool = True) -> Result:
        result = self.runner.invoke(cli, [str(a) for a in args], env=self.env, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, f"modelarc {args} failed:\n{result.output}"
        else:
            assert result.exit_code != 0, f"modelarc {args} should have failed:\n{result.output}"
            assert "Traceback" not in result.output, result.output
            lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
            assert lines and lines[-1].startswith(("error: ", "Error: ")), result.output
        return result

    def json(self, *args: object) -> object:
        return json.loads(self(*args, "--json").stdout)

    def archive(self) -> Archive:
        return Archive.open(self.path)


@dataclass
class Server:
    archive: Archive
    url: str
    push_token: str
    read_token: str


@functools.cache
def _catalog_template() -> Path:
    """An SQLite catalog brought to the schema's head by the real migrations, once per test process.

    Every home ``make_home`` makes starts from a copy of it, as ``database_url`` does (tests/conftest.py): running
    the migrations for each of the suite's homes cost ~0.3 s a home. The migrations themselves are tested on empty
    databases (``empty_database_url``), and ``modelarc init`` still opens the copy and checks it is at head."""
    from modelarc.registry.db import Catalog

    folder = Path(tempfile.mkdtemp(prefix="modelarc-catalog-template-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = folder / "registry.db"
    Catalog(f"sqlite:///{path}").dispose()
    return path


def make_home(tmp_path: Path, name: str) -> Home:
    """A home made by ``modelarc init``, its catalog a copy of one already at the schema's head."""
    home = Home(tmp_path / name, CliRunner())
    home.path.mkdir(mode=0o700, parents=True)
    os.chmod(home.path, 0o700)  # as init makes a new home, whatever the umask
    sqlite_copy(_catalog_template(), home.path / "registry.db")
    home("init")
    return home


def trusted_by_server(server: Server, home: Home) -> None:
    with home.archive() as a:
        server.archive.import_key(a.public_key_pem(), label=home.path.name)


def files_of(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def copy_into(made: Path, tmp_path: Path) -> None:
    """Copy what a module fixture made under ``made`` (homes, model folders) into a test's ``tmp_path``, at the
    same relative paths: the test gets its own homes, as if it had made them itself, for a copy's cost.

    A home holds no absolute path of its own (its catalog is ``registry.db`` beside the store, found through
    MODELARC_HOME), so the copy is a working archive with the same key, snapshots, remotes and trusted keys."""
    shutil.copytree(made, tmp_path, dirs_exist_ok=True)
