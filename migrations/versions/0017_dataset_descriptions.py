"""dataset descriptions: a dataset row is one description (description_hash, UNIQUE), no longer one content_hash

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-11 09:00:00

Until now the first description recorded for a content hash was shared by every later manifest entry naming that
hash, so whoever stated a public dataset's sha256 first chose the name, licence and notes of every later model
trained on it (docs/SECURITY.md). From here a row is identified by the hash of its whole recorded description
(registry/dataset_identity.py); ``content_hash`` stays the data's hash, indexed but no longer unique.

Downgrade refuses while two rows state one content_hash: the old schema can hold only one of them, and merging them
would link snapshots to a description their manifests never gave (the hole this revision closes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# SQLite may hold the UNIQUE of 0002 unnamed: batch mode names what it reflects by this, so it can be dropped
_NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}

_FIELDS = (
    "content_hash",
    "name",
    "version",
    "source_url",
    "license",
    "size_bytes",
    "records",
    "tokens",
    "time_start",
    "time_end",
    "notes",
)

_datasets = sa.table(
    "datasets",
    sa.column("id", sa.Integer()),
    sa.column("content_hash", sa.String()),
    sa.column("description_hash", sa.String()),
    sa.column("name", sa.String()),
    sa.column("version", sa.String()),
    sa.column("source_url", sa.Text()),
    sa.column("license", sa.String()),
    sa.column("size_bytes", sa.BigInteger()),
    sa.column("records", sa.BigInteger()),
    sa.column("tokens", sa.BigInteger()),
    sa.column("time_start", sa.Date()),
    sa.column("time_end", sa.Date()),
    sa.column("notes", sa.Text()),
)


def _description_hash(fields: dict[str, Any]) -> str:
    """Frozen copy of registry/dataset_identity.py ``description_hash_of`` (format 1): a row filled here must get
    the hash a new entry describing it alike gets, today and after that module changes."""

    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, dt.date) else value

    doc = {"format": 1, **{f: plain(fields.get(f)) for f in _FIELDS}}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _content_hash_unique(conn: sa.Connection) -> str:
    """The name of 0002's UNIQUE (content_hash): PostgreSQL's own (datasets_content_hash_key), or on SQLite the
    name ``_NAMES`` gives an unnamed one."""
    for uq in sa.inspect(conn).get_unique_constraints("datasets"):
        if uq["column_names"] == ["content_hash"]:
            return uq["name"] or "uq_datasets_content_hash"
    raise RuntimeError("datasets has no UNIQUE (content_hash) to drop: this catalog is not at revision 0016")


@contextmanager
def _rebuilt_datasets(conn: sa.Connection, **batch: Any) -> Iterator[Any]:
    """``op.batch_alter_table("datasets")`` that SQLite can run with rows present.

    SQLite changes a constraint only by rebuilding the table: copy, DROP, rename. With foreign keys on (as every
    catalog connection is, registry/db.py) the DROP fails while snapshot_datasets rows point at datasets, and the
    pragma cannot be turned off inside the migration's transaction. So the links are set aside in a temporary table
    for the rebuild and put back after it, ids and all; the datasets keep their ids, so every link is valid again.
    PostgreSQL alters the constraints in place.
    """
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        conn.execute(sa.text("CREATE TEMP TABLE _links_0017 AS SELECT * FROM snapshot_datasets"))
        conn.execute(sa.text("DELETE FROM snapshot_datasets"))
    with op.batch_alter_table("datasets", schema=None, **batch) as batch_op:
        yield batch_op
    if sqlite:
        conn.execute(sa.text("INSERT INTO snapshot_datasets SELECT * FROM _links_0017"))
        conn.execute(sa.text("DROP TABLE _links_0017"))


def upgrade() -> None:
    conn = op.get_bind()
    op.add_column("datasets", sa.Column("description_hash", sa.String(length=64), nullable=True))
    rows = conn.execute(sa.select(_datasets.c.id, *(_datasets.c[f] for f in _FIELDS))).all()
    for row in rows:
        fields = row._asdict()
        conn.execute(
            sa.update(_datasets)
            .where(_datasets.c.id == fields.pop("id"))
            .values(description_hash=_description_hash(fields))
        )
    unique = _content_hash_unique(conn)
    with _rebuilt_datasets(conn, naming_convention=_NAMES) as batch_op:
        batch_op.drop_constraint(unique, type_="unique")
        batch_op.alter_column("description_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint("uq_datasets_description_hash", ["description_hash"])
        batch_op.create_index("ix_datasets_content_hash", ["content_hash"], unique=False)


def downgrade() -> None:
    conn = op.get_bind()
    shared = conn.execute(
        sa.select(_datasets.c.content_hash, sa.func.count())
        .group_by(_datasets.c.content_hash)
        .having(sa.func.count() > 1)
        .order_by(_datasets.c.content_hash)
        .limit(3)
    ).all()
    if shared:
        listed = ", ".join(f"{h} ({n} descriptions)" for h, n in shared)
        raise RuntimeError(
            f"cannot downgrade below 0017: datasets state one content hash under several descriptions ({listed}); "
            "revision 0016 keeps one row per content hash, and merging them would show snapshots with a "
            "description their manifests did not give"
        )
    with _rebuilt_datasets(conn) as batch_op:
        batch_op.drop_index("ix_datasets_content_hash")
        batch_op.drop_constraint("uq_datasets_description_hash", type_="unique")
        batch_op.drop_column("description_hash")
        batch_op.create_unique_constraint("datasets_content_hash_key", ["content_hash"])
