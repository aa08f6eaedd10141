"""The `database_url` fixtures hand out a working database on each backend (both must run in CI), and the
MODELARC_* environment guard catches leaks."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text


def test_database_url_accepts_a_query(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_each_test_gets_an_empty_database(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            # A table left by another test (or another xdist worker) would make this fail.
            connection.execute(text("CREATE TABLE fixture_probe (id INTEGER PRIMARY KEY)"))
    finally:
        engine.dispose()


def test_database_url_is_at_the_schema_head_and_holds_no_rows(database_url: str) -> None:
    """A copy of the template must be what the migrations make, and nothing a test left in it."""
    _assert_at_head_and_empty(database_url)


def test_two_tests_do_not_share_a_database(database_url: str) -> None:
    """Each test writes into its own copy: a row left here would show up in the test above when both ran in
    one worker, and in the next copy if the template itself were handed out."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE fixture_probe_two (id INTEGER PRIMARY KEY)"))
            connection.execute(text("INSERT INTO catalog_settings (key, value) VALUES ('probe', 'x')"))
    finally:
        engine.dispose()


def test_empty_database_url_has_no_tables(empty_database_url: str) -> None:
    from sqlalchemy import inspect

    engine = create_engine(empty_database_url)
    try:
        with engine.connect() as connection:
            assert inspect(connection).get_table_names() == []
    finally:
        engine.dispose()


def test_module_database_url_accepts_a_query(module_database_url: str) -> None:
    engine = create_engine(module_database_url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


LEAKY_TESTS = '''
import os
import pytest

def test_leaks():
    os.environ["MODELARC_DATABASE_URL"] = "sqlite:///elsewhere.db"

def test_next_test_starts_with_the_session_env():
    assert "MODELARC_DATABASE_URL" not in os.environ

@pytest.fixture(scope="module")
def holds_actor():
    os.environ["MODELARC_ACTOR"] = "module"
    yield
    os.environ.pop("MODELARC_ACTOR", None)

def test_under_a_module_fixture_that_holds_a_change(holds_actor):
    pass

def test_monkeypatch_is_fine(monkeypatch):
    monkeypatch.setenv("MODELARC_ACTOR", "function")
'''


def test_env_guard_fails_tests_and_fixtures_that_leave_modelarc_env_changed(tmp_path: Path) -> None:
    """The autouse guard in conftest.py: a leak fails the test that leaked, not the ones after it."""
    (tmp_path / "conftest.py").write_text((Path(__file__).parent / "conftest.py").read_text())
    for imported in ("s3server.py", "pgreuse.py"):  # conftest imports them
        (tmp_path / imported).write_text((Path(__file__).parent / imported).read_text())
    (tmp_path / "test_leaky.py").write_text(LEAKY_TESTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELARC_", "PYTEST_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout
    assert proc.returncode == 1, out
    assert "test_leaky.py::test_leaks left MODELARC_* changed (MODELARC_DATABASE_URL: None -> " in out
    assert "MODELARC_* differ from the session's start before test_leaky.py::test_under_a_module_fixture" in out
    assert "PASSED test_leaky.py::test_next_test_starts_with_the_session_env" in out
    assert "PASSED test_leaky.py::test_monkeypatch_is_fine" in out
    assert "3 passed, 2 errors" in out, out


def _insert_model(url: str, name: str) -> int:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            return connection.execute(
                text(
                    "INSERT INTO models (namespace, name, created_at) VALUES ('acme', :n, now()) RETURNING id"
                ),
                {"n": name},
            ).scalar_one()
    finally:
        engine.dispose()


def _assert_at_head_and_empty(url: str) -> None:
    from modelarc.registry.db import current_revision, head_revision

    engine = create_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
    counts = _row_counts(url)
    assert "snapshots" in counts
    assert not any(counts.values()), counts


def _row_counts(url: str) -> dict[str, int]:
    from sqlalchemy import inspect

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = [t for t in inspect(connection).get_table_names() if t != "alembic_version"]
            return {t: connection.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one() for t in tables}
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "change",
    [
        "CREATE TABLE fixture_probe (id INTEGER PRIMARY KEY)",
        "ALTER TABLE models ADD COLUMN probe TEXT",
        "DROP INDEX ix_snapshots_digest",
        "UPDATE alembic_version SET version_num = '9999'",
        "CREATE FUNCTION probe() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    ],
)
def test_the_reused_postgresql_catalog_is_emptied_or_replaced(_postgres_template: str, change: str) -> None:
    """tests/pgreuse.py: after a test that only added rows, the same database comes back with no rows and its
    ids starting again at 1; after one that changed anything else, the next test gets a new copy."""
    from pgreuse import ReusedCatalog

    reused = ReusedCatalog(os.environ["MODELARC_TEST_POSTGRES_URL"], _postgres_template)
    try:
        lending = reused.lend()
        url = next(lending)
        assert [_insert_model(url, "a"), _insert_model(url, "b")] == [1, 2]
        next(lending, None)

        lending = reused.lend()
        assert next(lending) == url  # rows only: the same database, emptied
        assert not any(_row_counts(url).values())
        assert _insert_model(url, "a") == 1  # its sequences restarted
        engine = create_engine(url)
        try:
            with engine.begin() as connection:
                connection.execute(text(change))
        finally:
            engine.dispose()
        next(lending, None)

        lending = reused.lend()
        fresh = next(lending)
        assert fresh != url  # a schema changed: a new copy of the template
        _assert_at_head_and_empty(fresh)
        next(lending, None)
    finally:
        reused.drop()
