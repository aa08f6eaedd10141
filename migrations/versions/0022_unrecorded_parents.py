"""snapshots.unrecorded_parents: lineage a received snapshot declared whose parent this catalog lacked

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01 02:00:00

A received push or pull may name parents the receiver does not hold: the snapshot is recorded without those edges
(``parents_missing``). The declaration is kept here, ``[{model, snapshot, relation}]``, so a later commit of the
same snapshot that brings the parent (``push --with-parents``) records exactly that edge and no other
(archive/provenance/repush.py). Existing rows have none: what their first push declared was not kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("snapshots", sa.Column("unrecorded_parents", sa.JSON(), nullable=True))  # plain ADD COLUMN


def downgrade() -> None:
    # DROP COLUMN in place on both (SQLite 3.35+): a batch copy of snapshots would lose its expression index
    op.execute("ALTER TABLE snapshots DROP COLUMN unrecorded_parents")
