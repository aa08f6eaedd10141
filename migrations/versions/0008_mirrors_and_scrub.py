"""mirrors and scrub: other stores holding copies of the objects, and when each object was last re-hashed

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("objects") as batch:
        batch.add_column(sa.Column("verified_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("last_check", sa.String(length=10), nullable=True))
        batch.create_index(batch.f("ix_objects_verified_at"), ["verified_at"], unique=False)
    op.create_table(
        "mirrors",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("target", sa.String(length=1000), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.Column("synced_at", sa.DateTime(), nullable=True),
        sa.Column("objects_copied", sa.BigInteger(), nullable=False),
        sa.Column("verified_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("mirrors")
    with op.batch_alter_table("objects") as batch:
        batch.drop_index(batch.f("ix_objects_verified_at"))
        batch.drop_column("last_check")
        batch.drop_column("verified_at")
