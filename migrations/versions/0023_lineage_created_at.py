"""lineage.created_at: when each edge was recorded, so ``--as-of`` leaves out the edges recorded later

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01 05:00:00

An edge is recorded with its child snapshot, except a declared parent the catalog lacked then
(``snapshots.unrecorded_parents``, 0022), whose edge a later recording adds. Upgrade gives every existing edge its
child's ``created_at``: true for all but those added later, whose real time the old schema did not keep (the
audit log's ``lineage_added`` entry has it); for them ``--as-of`` answers as if the edge had been there from the
child's first recording, as it always did. A catalog rebuilt from the store's records (``rebuild-catalog``) dates
every edge from the record that added it.

The column defaults to the time of the insert (UTC) in the database itself: a server of the version before this
one, still running while another process migrates a shared catalog, writes edges without it; with the default
its commits go on (dated when written), where NOT NULL alone failed every commit that recorded lineage.
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # added nullable, filled from the child, then made NOT NULL: batch mode on SQLite (lineage has no expression
    # index to lose), ALTER in place on PostgreSQL
    op.add_column("lineage", sa.Column("created_at", sa.DateTime(), nullable=True))
    op.execute(
        "UPDATE lineage SET created_at = (SELECT snapshots.created_at FROM snapshots"
        " WHERE snapshots.id = lineage.child_id)"
    )
    # the catalog's times are naive UTC: SQLite's CURRENT_TIMESTAMP is UTC; PostgreSQL's is the session's zone
    utc_now = "CURRENT_TIMESTAMP" if op.get_bind().dialect.name == "sqlite" else "(now() AT TIME ZONE 'utc')"
    with warnings.catch_warnings():  # SQLite copies the table: reflection cannot read an expression index
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection")
        with op.batch_alter_table("lineage") as batch:
            batch.alter_column(
                "created_at", existing_type=sa.DateTime(), nullable=False, server_default=sa.text(utc_now)
            )


def downgrade() -> None:
    op.execute("ALTER TABLE lineage DROP COLUMN created_at")
