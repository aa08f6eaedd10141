"""Fixtures shared by the whole suite. Each concern has its own section below."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# ---------------------------------------------------------------------------------------------------------
# Databases
#
# `database_url` runs a test once per catalog backend: the embedded SQLite default and a real PostgreSQL.
# `make test` starts a throwaway server (scripts/ci/postgres.sh) and exports MODELARC_TEST_POSTGRES_URL,
# the SQLAlchemy URL of a superuser on it; each test gets a database of its own, dropped afterwards.
# Without that variable the PostgreSQL case is skipped locally, and fails under CI=true so that CI can
# never pass having tested SQLite alone.
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


@contextmanager
def new_postgresql_database() -> Iterator[str]:
    """SQLAlchemy URL of a new, empty PostgreSQL database, dropped when the block ends."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    server = make_url(_postgres_server_url())
    # psycopg wants a libpq URL: the same URL without SQLAlchemy's "+psycopg" driver suffix.
    admin_conninfo = server.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    name = f"modelarc_test_{uuid.uuid4().hex[:16]}"
    try:
        admin = psycopg.connect(admin_conninfo, autocommit=True, connect_timeout=10)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"cannot reach the test PostgreSQL at {server!r} ({POSTGRES_URL_ENV}): {exc}", pytrace=False
        )
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield server.set(drivername="postgresql+psycopg", database=name).render_as_string(
                hide_password=False
            )
        finally:
            # FORCE ends the connections a test's engine pool may still hold.
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    """SQLAlchemy URL of a new, empty PostgreSQL database, dropped when the test ends."""
    with new_postgresql_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """SQLAlchemy URL of an empty catalog database; the test runs once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgresql_url"))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``database_url`` for a module-scoped fixture that builds one archive for many read-only tests.

    Set it with ``pytest.MonkeyPatch.context()`` inside that fixture, never with ``os.environ`` directly: the
    variable must be restored when the module ends, or later modules silently run on this module's catalog.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('catalog') / 'registry.db'}"
        return
    with new_postgresql_database() as url:
        yield url


# ---------------------------------------------------------------------------------------------------------
