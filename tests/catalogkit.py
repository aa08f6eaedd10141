"""Catalogs in tests: opening one for a fixture, copying one already at the schema's head, and losing one on
purpose for the tests of rebuilding it from the store (tests/cli/test_cli_rebuild.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine

from modelarc.registry.db import Catalog


def sqlite_copy(template: Path, target: Path) -> str:
    """A copy of the SQLite catalog ``template`` at ``target`` by SQLite's backup API (consistent whatever its
    journal holds); its URL."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
    return f"sqlite:///{target}"


def drop_catalog(url: str) -> None:
    """Lose the catalog: the SQLite file (with its WAL), or the PostgreSQL database, made again empty."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            p.unlink(missing_ok=True)
        return
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(parsed.database)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(parsed.database)))


def open_catalog(url: str) -> Iterator[Catalog]:
    """The catalog at ``url`` (brought to head as any command brings it), disposed when the generator ends: the body
    of the tests' ``catalog`` fixtures (``yield from open_catalog(url)``)."""
    catalog = Catalog(url)
    try:
        yield catalog
    finally:
        catalog.dispose()


def downgrade_catalog(url: str, revision: str) -> None:
    """Take a catalog back to an older revision, as an archive made by an older modelarc has it. On SQLite through
    the engine migrations use (registry/db.py ``upgrade``): one transaction, foreign keys off while tables are copied
    (0020 copies ``objects``, which snapshot_objects refers to)."""
    from alembic import command

    from modelarc.registry.db import _sqlite_engine, alembic_config, make_engine

    engine = make_engine(url)
    migrating = _sqlite_engine(engine.url, transactional_ddl=True) if engine.dialect.name == "sqlite" else engine
    cfg = alembic_config(engine)
    try:
        with migrating.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, revision)
    finally:
        migrating.dispose()
        engine.dispose()


@contextmanager
def migrated(engine: Engine, revision: str, *, down: bool = False) -> Iterator[Connection]:
    """Bring the catalog on ``engine`` up (or ``down``) to ``revision`` in one transaction and yield its
    connection, so the rows a migration test writes or reads next share that transaction. Through ``engine``
    itself, not the transactional-DDL engine of registry/db.py ``upgrade`` (``downgrade_catalog`` uses that one)."""
    from alembic import command

    from modelarc.registry.db import alembic_config

    cfg = alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(cfg, revision)
        yield conn


def migrate(engine: Engine, revision: str, *, down: bool = False) -> None:
    """``migrated`` with nothing more to do in its transaction."""
    with migrated(engine, revision, down=down):
        pass
