"""objects.last_check indexed: the objects scrub found corrupt or missing are found without reading every row

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 22:15:00
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every push asks which of its objects the last scrub found bad (a heal replaces them), and repair asks for all
    # of them: without an index each of those questions read the whole objects table, a million rows on a big store.
    # Almost every row is NULL or 'ok', so the index answers 'corrupt'/'missing' by reading only the bad ones.
    op.create_index("ix_objects_last_check", "objects", ["last_check"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_objects_last_check", table_name="objects")
