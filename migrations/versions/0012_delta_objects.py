"""delta objects: each object's delta base and standalone size; snapshot objects kept only as a delta's base;
leases that record an upload

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 13:00:00
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A fine-tune's chunks may be stored as deltas (codec 3) against its parent's: the catalog records each
    # delta's base (read from the object's header when it was recorded) so gc, rm, transfers and stats follow
    # chains without reading the store, and what the object would have taken on its own (the savings `stats` reports).
    # plain ADD COLUMN (SQLite has it): a batch copy of the table would reflect it and every table it refers to
    op.add_column("objects", sa.Column("delta_base", sa.String(length=64), nullable=True))
    op.add_column("objects", sa.Column("standalone_size", sa.BigInteger(), nullable=True))
    op.create_index("ix_objects_delta_base", "objects", ["delta_base"], unique=False)
    # A snapshot keeps the bases its delta objects need (gc and rm never free them), but such an object is not
    # part of the snapshot's content: reading the snapshot's weights gives no right to read its bases' bytes.
    op.add_column(
        "snapshot_objects", sa.Column("as_base", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    # A pusher may send a delta only against a base it may read or sent itself in this push: a lease says which
    # objects it uploaded (a lease on an object found already present proves nothing about knowing its bytes).
    op.add_column(
        "object_leases", sa.Column("uploaded", sa.Boolean(), nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    op.drop_index("ix_objects_delta_base", table_name="objects")
    with warnings.catch_warnings():  # SQLite copies the tables: reflection cannot read an expression index
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection")
        with op.batch_alter_table("object_leases") as batch:
            batch.drop_column("uploaded")
        with op.batch_alter_table("snapshot_objects") as batch:
            batch.drop_column("as_base")
        with op.batch_alter_table("objects") as batch:
            batch.drop_column("standalone_size")
            batch.drop_column("delta_base")
