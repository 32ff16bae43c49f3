"""Feature views: the online values (when Redis is not the online store) and each
materialisation run.

Revision ID: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "feature_values",
        sa.Column("view", sa.String(64), primary_key=True),
        sa.Column("entity", sa.String(255), primary_key=True),
        sa.Column("feature_values", sa.Text, nullable=False),
        sa.Column("event_us", sa.BigInteger, nullable=False),
        sa.Column("written_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "feature_loads",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("view", sa.String(64), nullable=False),
        sa.Column("target", sa.String(16), nullable=False),
        sa.Column("definition", sa.String(64), nullable=False),
        sa.Column("since_us", sa.BigInteger, nullable=True),
        sa.Column("watermark_us", sa.BigInteger, nullable=True),
        sa.Column("source_rows", sa.BigInteger, nullable=False),
        sa.Column("entities", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_feature_loads_view_target", "feature_loads", ["view", "target", "id"])


def downgrade() -> None:
    op.drop_index("ix_feature_loads_view_target", table_name="feature_loads")
    op.drop_table("feature_loads")
    op.drop_table("feature_values")
