"""Homes, a served archive and small helpers shared by the transfer tests (tests/transfer/)."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

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


def make_home(tmp_path: Path, name: str) -> Home:
    home = Home(tmp_path / name, CliRunner())
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
