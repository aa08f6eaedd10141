"""catalog settings: named values the catalog keeps about itself, first the identity of its store

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 02:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a new table, empty: an archive made before it has no store identity until `modelarc init` records one
    op.create_table(
        "catalog_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("catalog_settings")
