"""tag moves indexed with their time: (model_id, tag, id, moved_at) in place of (model_id, tag, id)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 01:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `--as-of` asks, for each snapshot of a page, whether a later move of its tag had happened by then: with
    # moved_at in the index that is answered from the index, without reading each later move's row. The old index
    # is this one's prefix, so it goes.
    op.drop_index("ix_tag_history_model_tag", table_name="tag_history")
    op.create_index(
        "ix_tag_history_model_tag_moved", "tag_history", ["model_id", "tag", "id", "moved_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_tag_history_model_tag_moved", table_name="tag_history")
    op.create_index("ix_tag_history_model_tag", "tag_history", ["model_id", "tag", "id"], unique=False)
