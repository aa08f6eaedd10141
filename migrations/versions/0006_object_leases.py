"""object leases: objects a remote push has uploaded but not yet committed, kept from gc until they expire

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "object_leases",
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("object_id", "holder"),
    )
    op.create_index(op.f("ix_object_leases_expires_at"), "object_leases", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_object_leases_expires_at"), table_name="object_leases")
    op.drop_table("object_leases")
