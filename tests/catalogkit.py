"""Catalogs in tests: opening one for a fixture, copying one already at the schema's head, losing one on purpose
for the tests of rebuilding it from the store (tests/cli/test_cli_rebuild.py), and holding a lock in it as a stuck
transaction would."""

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


@contextmanager
def lock_held(database_url: str, postgres_lock: str, hold: float, **params: object) -> Iterator[None]:
    """A lock held by another connection, in a thread of its own, until the block ends or for ``hold`` seconds at
    most (a change that waits without bound then goes through, and the test fails instead of hanging): SQLite's one
    write lock, or on PostgreSQL what the statement ``postgres_lock`` (with ``params``) takes in a transaction."""
    import sqlite3
    import threading

    from sqlalchemy import create_engine, make_url, text

    taken, done = threading.Event(), threading.Event()

    def hold_it() -> None:
        if database_url.startswith("sqlite"):
            conn = sqlite3.connect(make_url(database_url).database or "", isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")  # the one writer
            taken.set()
            done.wait(hold)
            conn.execute("ROLLBACK")
            conn.close()
            return
        engine = create_engine(database_url)
        try:
            with engine.connect() as conn, conn.begin():
                conn.execute(text(postgres_lock), params)
                taken.set()
                done.wait(hold)
        finally:
            engine.dispose()

    holder = threading.Thread(target=hold_it)
    holder.start()
    try:
        assert taken.wait(30)
        yield
    finally:
        done.set()
        holder.join(30)


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
