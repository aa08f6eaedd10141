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
from collections.abc import Callable, Iterator

import psycopg
from psycopg import sql

# Everything of a database's own that a migration or a test could change, as text: schemas, relations and their
# columns, defaults, constraints, indexes, triggers, functions, types, sequences' definitions, policies,
# extensions, the database's settings, and the schema's version stamp. Sequences' positions and rows are not in
# it: those the reset puts back.
_USER_NAMESPACES = (
    "SELECT oid FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'"
)
FINGERPRINT = f"""
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

_TABLES = f"""
SELECT c.oid::regclass::text FROM pg_class c
WHERE c.relkind IN ('r', 'p') AND c.relnamespace IN ({_USER_NAMESPACES}) AND c.relname <> 'alembic_version'
"""
_RESTART_SEQUENCES = f"""
SELECT setval(s.seqrelid, s.seqstart, false) FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
WHERE c.relnamespace IN ({_USER_NAMESPACES})
"""


class ReusedCatalog:
    """Lends one database, a copy of ``template``, to one test at a time (a test worker's tests run one by one).

    ``admin_conninfo``: a libpq URL of a superuser on the server's ``postgres`` database; ``url_for(name)``: the
    SQLAlchemy URL the tests get for database ``name``."""

    def __init__(self, admin_conninfo: str, template: str, url_for: Callable[[str], str]) -> None:
        self._admin = admin_conninfo
        self._template = template
        self._url_for = url_for
        self.name: str | None = None
        self._fingerprint: str | None = None

    def lend(self) -> Iterator[str]:
        """The database's URL for one test; emptied when the test ends, or dropped when it cannot be."""
        if self.name is None:
            self._create()
        assert self.name is not None
        yield self._url_for(self.name)
        if not self._emptied():
            self.drop()

    def drop(self) -> None:
        if self.name is None:
            return
        with psycopg.connect(self._admin, autocommit=True, connect_timeout=10) as admin:
            # FORCE ends the connections a test's engine pool or a leftover process still holds.
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name)))
        self.name = None
        self._fingerprint = None

    def _create(self) -> None:
        name = f"modelarc_test_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self._admin, autocommit=True, connect_timeout=10) as admin:
            # FILE_COPY copies the template's files (5x faster here than PostgreSQL 15's default WAL_LOG, which
            # writes every block of it to the WAL: 42 vs 205 ms a database)
            strategy = sql.SQL(" STRATEGY FILE_COPY" if admin.info.server_version >= 150000 else "")
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}{}").format(
                    sql.Identifier(name), sql.Identifier(self._template), strategy
                )
            )
        self.name = name
        with self._connect() as conn:
            self._fingerprint = conn.execute(FINGERPRINT).fetchone()[0]  # type: ignore[index]

    def _connect(self) -> psycopg.Connection:
        assert self.name is not None
        return psycopg.connect(psycopg.conninfo.make_conninfo(self._admin, dbname=self.name), connect_timeout=10)

    def _emptied(self) -> bool:
        """Every row gone and every sequence back at its start, if the schema is still the template's; False when
        it is not, or the reset could not run (a lock a leftover session holds, a database dropped by the test)."""
        try:
            with self._connect() as conn:
                conn.execute("SET lock_timeout = '5s'")
                if conn.execute(FINGERPRINT).fetchone()[0] != self._fingerprint:  # type: ignore[index]
                    return False
                # DELETE, not TRUNCATE: TRUNCATE gives every table and index new files, 100-500 ms here for the
                # catalog's tables; deleting a test's few rows costs a few ms. Foreign keys are not checked
                # (replica role) since every table is emptied in the one transaction.
                conn.execute("SET LOCAL session_replication_role = replica")
                for (table,) in conn.execute(_TABLES).fetchall():
                    conn.execute(f"DELETE FROM {table}")
                conn.execute(_RESTART_SEQUENCES)
                conn.commit()
            return True
        except psycopg.Error:
            return False
