"""A catalog that cannot be used (a URL that is no URL, a database other than SQLite or PostgreSQL, a file that is
not a database) is one error line naming the URL, password masked, or the file, for every command: never a
traceback, and nothing in the home is changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ArchiveCli


@pytest.fixture
def home(tmp_path: Path) -> ArchiveCli:
    """A home on its default catalog, HOME/registry.db."""
    archive = ArchiveCli(tmp_path / "home", f"sqlite:///{tmp_path / 'home' / 'registry.db'}")
    archive("init")
    return archive


def with_url(home: ArchiveCli, url: str) -> ArchiveCli:
    return ArchiveCli(home.home, url)


@pytest.mark.parametrize(
    ("url", "shown", "wrong"),
    [
        ("garbage", "'garbage'", "is not a database URL"),
        (
            "postgresql://ana:s3cret@db:notaport/x",
            "'postgresql://ana:***@db:notaport/x'",
            "is not a database URL",
        ),
        ("mysql://ana:s3cret@db/x", "'mysql://ana:***@db/x'", "the catalog is SQLite"),
        ("oracle://x", "'oracle://x'", "the catalog is SQLite"),
        ("postgresql+nosuchdriver://ana:s3cret@db/x", "'postgresql+nosuchdriver://ana:***@db/x'", "driver"),
    ],
)
@pytest.mark.parametrize("command", [("ls",), ("init",), ("rebuild-catalog",)])
def test_a_catalog_url_that_cannot_be_used_is_one_usage_error(
    home: ArchiveCli, url: str, shown: str, wrong: str, command: tuple[str, ...]
) -> None:
    result = with_url(home, url).fail(*command)
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: MODELARC_DATABASE_URL {shown}"), last
    assert wrong in last
    assert "s3cret" not in result.output


@pytest.mark.parametrize("command", [("ls",), ("init",), ("rebuild-catalog",), ("stats",)])
def test_a_registry_db_that_is_not_a_database_is_named_in_one_line(
    home: ArchiveCli, command: tuple[str, ...]
) -> None:
    db = home.home / "registry.db"
    for leftover in home.home.glob("registry.db-*"):  # the WAL of the real catalog
        leftover.unlink()
    db.write_text("garbage\n")
    result = home.fail(*command)
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"error: cannot open the catalog database {db}: file is not a database"
    )
    assert db.read_text() == "garbage\n"


def test_a_sqlite_url_naming_a_regular_file_is_named_in_one_line(home: ArchiveCli, tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("not a database, never to be touched\n")
    result = with_url(home, f"sqlite:///{other}").fail("ls")
    assert (
        result.stderr.strip().splitlines()[-1]
        == f"error: cannot open the catalog database {other}: file is not a database"
    )
    assert other.read_text() == "not a database, never to be touched\n"


def test_a_postgresql_server_that_cannot_be_reached_is_named_with_its_password_masked(
    home: ArchiveCli,
) -> None:
    result = with_url(home, "postgresql://ana:s3cret@127.0.0.1:1/x").fail("ls")
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: cannot open the catalog database postgresql://ana:***@127.0.0.1:1/x: "), (
        last
    )
    assert "s3cret" not in result.output
