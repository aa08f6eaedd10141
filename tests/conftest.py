"""Fixtures shared by the whole suite. Each concern has its own section below."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pgreuse import (
    ReusedCatalog,
    admin_conninfo,
    create_database,
    database_url_for,
    drop_database,
    new_database_name,
)

# ---------------------------------------------------------------------------------------------------------
# Databases
#
# `database_url` runs a test once per catalog backend: the embedded SQLite default and a real PostgreSQL.
# `make test` starts a throwaway server (scripts/ci/postgres.sh) and exports MODELARC_TEST_POSTGRES_URL,
# the SQLAlchemy URL of a superuser on it; each test gets a database at the schema's head with no rows: on
# PostgreSQL the worker's one catalog database, emptied after each test (tests/pgreuse.py).
# Without that variable the PostgreSQL case is skipped locally, and fails under CI=true so that CI can
# never pass having tested SQLite alone.
#
# `database_url` is a catalog at the schema's head: a copy of one database per backend and worker that the real
# migrations brought there (Catalog(), as every command opens it). Running the 17 migrations for each of ~1,800
# tests cost ~0.2 s on PostgreSQL and ~0.07 s on SQLite each, about 2 minutes of the suite's wall time; a copy
# (PostgreSQL's CREATE DATABASE ... TEMPLATE, SQLite's backup API) costs ~0.04 s. Tests of the migrations
# themselves take `empty_database_url`, a database nothing has touched.
# ---------------------------------------------------------------------------------------------------------

POSTGRES_URL_ENV = "MODELARC_TEST_POSTGRES_URL"


def _running_in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _postgres_server_url() -> str:
    url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if url:
        return url
    message = (
        f"{POSTGRES_URL_ENV} is not set, so there is no PostgreSQL to test against. "
        "Run `make test`, which starts one (scripts/ci/postgres.sh), or export the URL of a superuser, "
        "e.g. postgresql+psycopg://modelarc@127.0.0.1:54329/postgres"
    )
    if _running_in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of an empty SQLite catalog file in this test's tmp_path."""
    return f"sqlite:///{tmp_path / 'registry.db'}"


def _at_head(url: str) -> None:
    """Bring the database at ``url`` to the schema's head by the real migrations, as a command opening it would."""
    from modelarc.registry.db import Catalog

    Catalog(url).dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite catalog at the schema's head, made once per worker, that ``database_url`` copies."""
    path = tmp_path_factory.mktemp("catalog-template") / "registry.db"
    _at_head(f"sqlite:///{path}")
    return path


@contextmanager
def _new_postgres_database(template: str | None = None) -> Iterator[str]:
    """SQLAlchemy URL of a new PostgreSQL database on the test server, dropped on exit: empty, or a copy of the
    database named ``template``."""
    import psycopg
    from sqlalchemy.engine import make_url

    server_url = _postgres_server_url()
    server = make_url(server_url)
    name = new_database_name()
    try:
        admin = psycopg.connect(admin_conninfo(server_url), autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"cannot reach the test PostgreSQL at {server!r} ({POSTGRES_URL_ENV}): {exc}", pytrace=False
        )
    with admin:
        create_database(admin, name, template)
        try:
            yield database_url_for(server_url, name)
        finally:
            drop_database(admin, name)


@pytest.fixture(scope="session")
def _postgres_template() -> Iterator[str]:
    """The name of a PostgreSQL database at the schema's head, made once per worker, that ``database_url``
    copies; dropped when the worker ends."""
    from sqlalchemy.engine import make_url

    with _new_postgres_database() as url:
        _at_head(url)  # disposes its engine: a template must have no connection while it is copied
        name = make_url(url).database
        assert name is not None
        yield name


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    """SQLAlchemy URL of a new, empty PostgreSQL database, dropped when the test ends."""
    with _new_postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def _postgres_reused(_postgres_template: str) -> Iterator[ReusedCatalog]:
    """The worker's one PostgreSQL catalog that ``database_url`` lends to test after test (tests/pgreuse.py)."""
    reused = ReusedCatalog(_postgres_server_url(), _postgres_template)
    yield reused
    reused.drop()


def _catalog_url(request: pytest.FixtureRequest, backend: str, folder: Path) -> Iterator[str]:
    if backend == "sqlite":
        from catalogkit import sqlite_copy

        yield sqlite_copy(request.getfixturevalue("_sqlite_template"), folder / "registry.db")
    else:
        with _new_postgres_database(template=request.getfixturevalue("_postgres_template")) as url:
            yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """SQLAlchemy URL of a catalog database at the schema's head and holding no rows, for this test alone; the
    test runs once on SQLite (a copy of its own), once on PostgreSQL (the worker's database, emptied after each
    test and replaced when a test changed more than rows: tests/pgreuse.py)."""
    if request.param == "sqlite":
        yield from _catalog_url(request, "sqlite", tmp_path)
    else:
        yield from request.getfixturevalue("_postgres_reused").lend()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest) -> str:
    """SQLAlchemy URL of an empty database that no migration has touched, for tests of the migrations;
    once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgresql_url"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``database_url`` for module-scoped fixtures: one catalog per module and backend, shared by the
    module's tests, which run once on SQLite and once on PostgreSQL. Pass it to the code under test explicitly
    (``Archive.init``'s settings, a subprocess's env); never leave it in ``os.environ`` (see the guard below)."""
    yield from _catalog_url(request, request.param, tmp_path_factory.mktemp("catalog"))


# ---------------------------------------------------------------------------------------------------------
# Environment
#
# modelarc reads MODELARC_* (modelarc/config.py), so a test that leaves one changed silently reconfigures every
# later test in its worker: a popped MODELARC_DATABASE_URL sent whole modules to SQLite while CI believed it was
# testing PostgreSQL. The guard fails the test that leaks, and the first test that starts with the variables
# differing from the session's start (a module or session fixture holding a change). Set them with
# `monkeypatch.setenv` in function-scoped fixtures or pass them to CliRunner/subprocess env instead.
# ---------------------------------------------------------------------------------------------------------


def _modelarc_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("MODELARC_")}


_SESSION_MODELARC_ENV = _modelarc_env()


def _env_difference(expected: dict[str, str], actual: dict[str, str]) -> str:
    names = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
    return ", ".join(f"{k}: {expected.get(k)!r} -> {actual.get(k)!r}" for k in names)


def _restore_modelarc_env(wanted: dict[str, str]) -> None:
    for name in _modelarc_env().keys() - wanted.keys():
        del os.environ[name]
    os.environ.update(wanted)


@pytest.fixture(autouse=True)
def _modelarc_env_unchanged(request: pytest.FixtureRequest) -> Iterator[None]:
    before = _modelarc_env()
    if before != _SESSION_MODELARC_ENV:
        diff = _env_difference(_SESSION_MODELARC_ENV, before)
        _restore_modelarc_env(_SESSION_MODELARC_ENV)  # so that one leak fails one test, not every later one
        pytest.fail(
            f"MODELARC_* differ from the session's start before {request.node.nodeid} ({diff}): an earlier test "
            "or a module/session fixture changed them; use monkeypatch in a function-scoped fixture or pass the "
            "value explicitly",
            pytrace=False,
        )
    yield
    after = _modelarc_env()
    if after != before:
        _restore_modelarc_env(before)
        pytest.fail(
            f"{request.node.nodeid} left MODELARC_* changed ({_env_difference(before, after)}); "
            "use monkeypatch.setenv or CliRunner(env=...)",
            pytrace=False,
        )


# ---------------------------------------------------------------------------------------------------------
# S3
#
# `s3_bucket` is a new bucket on a real S3 API (moto's server on 127.0.0.1, one per worker, started on first use)
# with the AWS_* environment pointing at it for the test; `s3_endpoint` is the server's URL. See tests/s3server.py.
# ---------------------------------------------------------------------------------------------------------

from s3server import s3_bucket, s3_endpoint  # noqa: E402, F401  (fixtures, registered by being imported here)
