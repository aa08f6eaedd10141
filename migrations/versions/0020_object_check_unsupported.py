"""objects.last_check may say 'unsupported': an object of a newer format version or codec, which this modelarc cannot
read but which is not damaged (scrub, fsck, repair and heal leave it alone; docs/FORMAT.md "Versions")

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30 23:00:00
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def _width(width: int, was: int) -> None:
    # SQLite copies the table (it cannot change a column's type in place); PostgreSQL widens it in place
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection")
        with op.batch_alter_table("objects") as batch:
            batch.alter_column(
                "last_check", type_=sa.String(width), existing_type=sa.String(was), existing_nullable=True
            )


def upgrade() -> None:
    _width(16, 10)  # 'unsupported' is 11 characters


def downgrade() -> None:
    # an older modelarc knows no 'unsupported': forget what was found (its scrub looks again), rather than cut it
    op.execute("UPDATE objects SET last_check = NULL, verified_at = NULL WHERE last_check = 'unsupported'")
    _width(10, 16)
