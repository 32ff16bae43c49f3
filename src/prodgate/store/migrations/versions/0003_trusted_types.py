"""Versions record the skops types a person trusted at registration.

``trusted`` keeps meaning trust in the artifact's code (pickle); ``trusted_types`` is a
JSON list of type names (NULL: none), for skops files that name types outside the
allow-list.

Revision ID: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("trusted_types", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("trusted_types")
