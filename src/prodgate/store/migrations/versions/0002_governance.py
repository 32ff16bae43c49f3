"""Governance: traffic split columns, evaluations, approvals, feedback, rollouts.

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployments") as batch:
        batch.add_column(sa.Column("canary_version", sa.Integer, nullable=True))
        batch.add_column(sa.Column("canary_weight", sa.Float, nullable=False, server_default="0"))
        batch.add_column(sa.Column("shadow_version", sa.Integer, nullable=True))
        batch.add_column(sa.Column("previous_version", sa.Integer, nullable=True))
        batch.add_column(
            sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("disabled_reason", sa.Text, nullable=True))
    op.create_index("ix_audit_log_kind_service", "audit_log", ["kind", "service", "seq"])
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("label_column", sa.String(128), nullable=False),
        sa.Column("result", sa.Text, nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_evaluations_service_version", "evaluations", ["service", "version"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("approver", sa.String(128), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("override_gates", sa.Boolean, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evaluation_id", sa.Integer, nullable=True),
        sa.Column("created_at_us", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("service", "version", "approver", name="uq_approvals_once"),
    )
    op.create_table(
        "feedback",
        sa.Column("inference_id", sa.String(32), primary_key=True),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("observed_at_us", sa.BigInteger, nullable=False),
        sa.Column("received_at_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_feedback_service_received", "feedback", ["service", "received_at_us"])
    op.create_table(
        "rollouts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("service", sa.String(64), nullable=False),
        sa.Column("canary_version", sa.Integer, nullable=False),
        sa.Column("baseline_version", sa.Integer, nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("policy", sa.Text, nullable=False),
        sa.Column("interval_started_at_us", sa.BigInteger, nullable=False),
        sa.Column("started_by", sa.String(128), nullable=False),
        sa.Column("started_at_us", sa.BigInteger, nullable=False),
        sa.Column("updated_at_us", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_rollouts_service_state", "rollouts", ["service", "state"])


def downgrade() -> None:
    op.drop_index("ix_rollouts_service_state", table_name="rollouts")
    op.drop_table("rollouts")
    op.drop_index("ix_feedback_service_received", table_name="feedback")
    op.drop_table("feedback")
    op.drop_table("approvals")
    op.drop_index("ix_evaluations_service_version", table_name="evaluations")
    op.drop_table("evaluations")
    op.drop_index("ix_audit_log_kind_service", table_name="audit_log")
    with op.batch_alter_table("deployments") as batch:
        for column in (
            "disabled_reason",
            "disabled",
            "previous_version",
            "shadow_version",
            "canary_weight",
            "canary_version",
        ):
            batch.drop_column(column)
