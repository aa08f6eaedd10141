"""model names ignoring case: an index on (lower(namespace), lower(name)) for refusing lookalike names

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-10 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Creating a model asks whether one equal to it but for case exists (registry/queries.py ``name_clash``), and a
    # lookup that misses asks the same for "did you mean": this index answers both without reading every model.
    # Not UNIQUE: an archive made before the rule may hold such a pair (acme/tiny and Acme/tiny), which a unique
    # index would fail to build on; both keep working, and only new pairs are refused (docs/SECURITY.md). An
    # expression index: SQLite cannot reflect it, so a later batch rebuild of `models` on SQLite must recreate it.
    op.create_index(
        "ix_models_lower_name", "models", [sa.text("lower(namespace)"), sa.text("lower(name)")], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_models_lower_name", table_name="models")
