"""One PostgreSQL catalog database per test worker, handed to test after test and emptied between them.

A database of its own for each of the ~1,700 PostgreSQL test cases (CREATE DATABASE ... TEMPLATE, then DROP
DATABASE) cost the server ~40 ms of CPU and ~60-200 ms of a test's wall time, two checkpoints each: more than the
statements of a typical CLI test. Emptying the tables of a database whose schema is still the template's costs a
DELETE of its rows. What a test may have changed besides rows (a table created, a migration undone, the version stamp
rewritten, a database setting, a function) shows in the schema's fingerprint, and such a database is dropped and
the next test gets a new copy, so a test still starts from exactly the template's schema and no rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

# Everything of a database's own that a migration or a test could change, as text: schemas, relations and their
# columns, defaults, constraints, indexes, triggers, functions, types, sequences' definitions, policies,
# extensions, the database's settings, and the schema's version stamp. Sequences' positions and rows are not in
# it: those the reset puts back.
_USER_NAMESPACES = (
    "SELECT oid FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
)
_FINGERPRINT = f"""
SELECT md5(coalesce(string_agg(item, E'\\n' ORDER BY item), '')) FROM (
    SELECT 'namespace ' || nspname FROM pg_namespace WHERE oid IN ({_USER_NAMESPACES})
    UNION ALL
    SELECT 'relation ' || c.oid::regclass::text || ' ' || c.relkind::text || ' ' || c.relrowsecurity
        FROM pg_class c WHERE c.relnamespace IN ({_USER_NAMESPACES})
    UNION ALL
    SELECT 'column ' || a.attrelid::regclass::text || ' ' || a.attname || ' '
            || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' '
            || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relnamespace IN ({_USER_NAMESPACES})
    UNION ALL
    SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace IN ({_USER_NAMESPACES})
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace IN ({_USER_NAMESPACES})
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal
    UNION ALL
    SELECT 'function ' || oid::regprocedure::text || ' ' || md5(prosrc)
        FROM pg_proc WHERE pronamespace IN ({_USER_NAMESPACES})
    UNION ALL
    SELECT 'type ' || oid::regtype::text || ' ' || typtype::text FROM pg_type
        WHERE typnamespace IN ({_USER_NAMESPACES}) AND typtype IN ('c', 'd', 'e', 'r', 'm')
    UNION ALL
    SELECT 'label ' || enumtypid::regtype::text || ' ' || enumlabel FROM pg_enum
    UNION ALL
    SELECT 'sequence ' || seqrelid::regclass::text || ' ' || seqstart || ' ' || seqincrement || ' ' || seqcycle
        FROM pg_sequence
    UNION ALL
    SELECT 'policy ' || polrelid::regclass::text || ' ' || polname FROM pg_policy
    UNION ALL
    SELECT 'extension ' || extname || ' ' || extversion FROM pg_extension
    UNION ALL
    SELECT 'setting ' || setrole || ' ' || array_to_string(setconfig, ',') FROM pg_db_role_setting
        WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())
    UNION ALL
    SELECT 'version ' || version_num FROM alembic_version
) AS schema(item)
"""

# The reset, as functions of the worker's own session (pg_temp: not in the database's schema, so not in its
# fingerprint): one round trip a test.
_SESSION_FUNCTIONS = (
    f"""
CREATE FUNCTION pg_temp.modelarc_fingerprint() RETURNS text LANGUAGE sql AS $fingerprint$ {_FINGERPRINT} $fingerprint$
""",
    f"""
CREATE FUNCTION pg_temp.modelarc_empty(expected text) RETURNS boolean LANGUAGE plpgsql AS $empty$
DECLARE
    tab text;
BEGIN
    IF pg_temp.modelarc_fingerprint() IS DISTINCT FROM expected THEN
        RETURN false;
    END IF;
    -- DELETE, not TRUNCATE: TRUNCATE gives every table and index new files, 100-500 ms here for the catalog's
    -- tables. Foreign keys are not checked (replica role): every table is emptied in the one transaction.
    SET LOCAL session_replication_role = replica;
    FOR tab IN
        SELECT c.oid::regclass::text FROM pg_class c
        WHERE c.relkind IN ('r', 'p') AND c.relnamespace IN ({_USER_NAMESPACES}) AND c.relname <> 'alembic_version'
    LOOP
        EXECUTE 'DELETE FROM ' || tab;
    END LOOP;
    PERFORM setval(s.seqrelid, s.seqstart, false) FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        WHERE c.relnamespace IN ({_USER_NAMESPACES});
    RETURN true;
END
$empty$
""",
)


def admin_conninfo(server_url: str) -> str:
    """The libpq URL of the server's ``postgres`` database for the SQLAlchemy URL ``server_url`` of a superuser
    (MODELARC_TEST_POSTGRES_URL): psycopg wants the URL without SQLAlchemy's "+psycopg" driver suffix."""
    server = make_url(server_url)
    return server.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


def database_url_for(server_url: str, name: str) -> str:
    """The SQLAlchemy URL of database ``name`` on the server of ``server_url``."""
    server = make_url(server_url)
    return server.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)


def new_database_name() -> str:
    return f"modelarc_test_{uuid.uuid4().hex[:16]}"


def create_database(admin: psycopg.Connection, name: str, template: str | None = None) -> None:
    """Database ``name``, empty or a copy of ``template``; ``admin`` is an autocommit connection of a superuser."""
    if template is None:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return
    # FILE_COPY copies the template's files (5x faster here than PostgreSQL 15's default WAL_LOG, which writes
    # every block of it to the WAL: 42 vs 205 ms a database)
    strategy = sql.SQL(" STRATEGY FILE_COPY" if admin.info.server_version >= 150000 else "")
    admin.execute(
        sql.SQL("CREATE DATABASE {} TEMPLATE {}{}").format(sql.Identifier(name), sql.Identifier(template), strategy)
    )


def drop_database(admin: psycopg.Connection, name: str) -> None:
    # FORCE ends the connections a test's engine pool or a leftover process still holds.
    admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class ReusedCatalog:
    """Lends one database, a copy of ``template``, to one test at a time (a test worker's tests run one by one).

    ``server_url``: the SQLAlchemy URL of a superuser on the server (MODELARC_TEST_POSTGRES_URL)."""

    def __init__(self, server_url: str, template: str) -> None:
        self._server_url = server_url
        self._admin = admin_conninfo(server_url)
        self._template = template
        self.name: str | None = None
        self._fingerprint: str | None = None
        self._session: psycopg.Connection | None = None  # on the lent database, between tests

    def lend(self) -> Iterator[str]:
        """The database's URL for one test; emptied when the test ends, or dropped when it cannot be."""
        if self.name is None:
            self._create()
        assert self.name is not None
        yield database_url_for(self._server_url, self.name)
        if not self._emptied():
            self.drop()

    def drop(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        if self.name is None:
            return
        with psycopg.connect(self._admin, autocommit=True, connect_timeout=10) as admin:
            drop_database(admin, self.name)
        self.name = None

    def _create(self) -> None:
        name = new_database_name()
        with psycopg.connect(self._admin, autocommit=True, connect_timeout=10) as admin:
            create_database(admin, name, self._template)
        self.name = name
        session = psycopg.connect(
            psycopg.conninfo.make_conninfo(self._admin, dbname=name), autocommit=True, connect_timeout=10
        )
        session.execute("SET lock_timeout = '5s'")
        for function in _SESSION_FUNCTIONS:
            session.execute(function)  # type: ignore[arg-type]  # static text, built above
        self._fingerprint = session.execute("SELECT pg_temp.modelarc_fingerprint()").fetchone()[0]  # type: ignore[index]
        self._session = session

    def _emptied(self) -> bool:
        """Every row gone and every sequence back at its start, if the schema is still the template's; False when
        it is not, or the reset could not run (a lock a leftover session holds, a database dropped by the test)."""
        if self._session is None:
            return False
        try:
            with self._session.transaction():
                emptied = self._session.execute(
                    "SELECT pg_temp.modelarc_empty(%s)", [self._fingerprint]
                ).fetchone()[0]  # type: ignore[index]
            return bool(emptied)
        except psycopg.Error:
            return False
