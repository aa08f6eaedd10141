"""received policies: a snapshot's override that came with a received snapshot's offer says so

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-12 09:00:00

An override an administrator sets with ``--until`` lapses to public on its day (archive/access.py). One a pusher's
offer brought (``receive_policy``) must not: its date is the pusher's choice, and a pusher may not make a snapshot of
a gated model public. When it lapses the model's policy holds again. Existing rows are marked false: which of them a
push brought is not recorded anywhere but in their reason text, and false keeps what they did until now.
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMN (SQLite has it), server_default fills the existing rows
    op.add_column(
        "access_policies", sa.Column("received", sa.Boolean(), nullable=False, server_default=sa.false())
    )


def downgrade() -> None:
    with warnings.catch_warnings():  # SQLite copies the table: reflection cannot read an expression index
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection")
        with op.batch_alter_table("access_policies") as batch:
            batch.drop_column("received")
