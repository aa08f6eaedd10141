"""token namespaces: the namespaces a push token may write to (none recorded: archive-wide, as every token was)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a new table, empty: every existing token keeps the reach it was handed out with (all namespaces)
    op.create_table(
        "token_namespaces",
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["token_id"], ["api_tokens.id"]),
        sa.PrimaryKeyConstraint("token_id", "namespace"),
    )


def downgrade() -> None:
    # without the table a limited token would reach every namespace: revoke those tokens instead (fail closed)
    op.execute(
        "UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP"
        " WHERE revoked_at IS NULL AND id IN (SELECT token_id FROM token_namespaces)"
    )
    op.drop_table("token_namespaces")
