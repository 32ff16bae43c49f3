"""The review queue: items (escalated or sampled inferences) and reviewers' decisions.

Revision ID: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_items",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("cohort", sa.String(128), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("prediction", sa.Text, nullable=True),
        sa.Column("reviewers", sa.Integer, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("deadline_us", sa.BigInteger, nullable=True),
        sa.Column("claimed_by", sa.String(128), nullable=True),
        sa.Column("lease_until_us", sa.BigInteger, nullable=True),
        sa.Column("final", sa.Text, nullable=True),
        sa.Column("override", sa.Boolean, nullable=True),
        sa.Column("decided_us", sa.BigInteger, nullable=True),
        sa.Column("attributions", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_review_items_service_state", "review_items", ["service", "state", "created_us"]
    )
    op.create_table(
        "review_decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("item_id", sa.String(32), nullable=False),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("label", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("claimed_us", sa.BigInteger, nullable=True),
        sa.Column("at_us", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("item_id", "reviewer", "role", name="uq_review_decisions_once"),
    )
    op.create_index("ix_review_decisions_item", "review_decisions", ["item_id"])


def downgrade() -> None:
    op.drop_index("ix_review_decisions_item", table_name="review_decisions")
    op.drop_table("review_decisions")
    op.drop_index("ix_review_items_service_state", table_name="review_items")
    op.drop_table("review_items")
