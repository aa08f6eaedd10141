"""A fresh archive home per test, on each catalog backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from modelarc.cli.main import cli


class ArchiveCli:
    def __init__(self, home: Path, database_url: str) -> None:
        self.home = home
        self.env = {
            "MODELARC_HOME": str(home),
            "MODELARC_DATABASE_URL": database_url,
            "MODELARC_ACTOR": "tester",
        }
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True) -> Result:
        result = self.runner.invoke(cli, [str(a) for a in args], env=self.env, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, f"modelarc {' '.join(map(str, args))} failed:\n{result.output}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "--json").stdout)

    def fail(self, *args: str) -> Result:
        """Run a command that must fail with one clear error line and no traceback."""
        result = self(*args, ok=False)
        assert result.exit_code != 0, f"expected failure: {args}\n{result.output}"
        assert "Traceback" not in result.output
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) >= 1 and (lines[-1].startswith("error: ") or lines[-1].startswith("Error: ")), (
            result.output
        )
        return result


@pytest.fixture
def bare_arc(tmp_path: Path, database_url: str) -> ArchiveCli:
    """A home not yet initialised: for tests of `modelarc init` itself (e.g. with --store)."""
    return ArchiveCli(tmp_path / "home", database_url)


@pytest.fixture
def arc(tmp_path: Path, database_url: str) -> ArchiveCli:
    archive = ArchiveCli(tmp_path / "home", database_url)
    archive("init")
    return archive


@pytest.fixture(scope="module")
def module_arc(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> ArchiveCli:
    """``arc`` made once per module and backend and shared by the module's tests: for tests that only read the
    archive, or change it in ways no other test of the module observes (each module says which). Its
    MODELARC_* go to each command's CliRunner env, never into os.environ."""
    archive = ArchiveCli(tmp_path_factory.mktemp("home") / "home", module_database_url)
    archive("init")
    return archive


@pytest.fixture
def catalog_snapshot(arc: ArchiveCli) -> Callable[[], tuple[Any, Any]]:
    """What `ls` and `stats` say, to prove a failed command changed nothing."""
    return lambda: (arc.json("ls"), arc.json("stats")["objects"])


@pytest.fixture
def hub(tmp_path: Path, arc: ArchiveCli) -> Iterator[Any]:
    """A Hub imitation on 127.0.0.1 (tests/hubserver.py) that ``arc`` imports from: HF_ENDPOINT points at it, with
    an HF cache of the test's own."""
    from hubserver import HubServer

    server = HubServer().start()
    arc.env.update(
        {
            "HF_ENDPOINT": server.url,
            "HF_HOME": str(tmp_path / "hf-home"),
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_XET": "1",
        }
    )
    yield server
    server.stop()
