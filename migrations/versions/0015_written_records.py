"""written records: the catalog records this archive wrote, which `repair` may put back from any mirror (none are
noted for records written before this revision: repair takes those only with `--records-from MIRROR`)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a new table, empty: the catalog cannot tell which of the store's records it wrote before now (docs/FORMAT.md)
    op.create_table(
        "written_records",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    # without the notes, an older repair puts back any record a mirror holds, as it always did
    op.drop_table("written_records")
