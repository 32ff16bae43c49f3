"""API keys: hashed secrets, scopes, owners (people or agents) and limits; an
approval and a version record the person accountable when an agent acted.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("previous_hash", sa.String(64), nullable=True),
        sa.Column("previous_until_us", sa.BigInteger, nullable=True),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("agent", sa.Boolean, nullable=False),
        sa.Column("limits", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.Column("expires_at_us", sa.BigInteger, nullable=True),
        sa.Column("revoked_at_us", sa.BigInteger, nullable=True),
        sa.Column("revoked_by", sa.String(128), nullable=True),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_api_keys_updated", "api_keys", ["updated_at_us"])
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("owner", sa.String(128), nullable=True))
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("owner", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("owner")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("owner")
    op.drop_index("ix_api_keys_updated", "api_keys")
    op.drop_table("api_keys")
