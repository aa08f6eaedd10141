"""A catalog a newer modelarc migrated (its schema revision is one this version has no migration for) is refused
in one line naming the revision and what to do, with the exit code of every "needs a newer modelarc" refusal (17),
and left as it is: Alembic, asked to upgrade from a revision it does not know, raised a traceback on every command.
On SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from modelarc.errors import UnsupportedFormatError
from modelarc.registry.db import head_revision


def test_a_catalog_of_a_newer_schema_is_refused_in_one_line_and_left_alone(arc, database_url: str) -> None:
    engine = create_engine(database_url)
    newer = f"{int(head_revision() or '0') + 1:04d}"
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": newer})
    for command in (["ls"], ["init"], ["fsck"]):
        result = arc(*command, ok=False)
        assert result.exit_code == UnsupportedFormatError.exit_code
        (line,) = result.stderr.strip().splitlines()
        assert f"schema revision {newer}" in line and "newer modelarc" in line
        assert "Traceback" not in result.stderr + result.stdout
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == newer
    engine.dispose()
