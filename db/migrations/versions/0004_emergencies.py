"""emergencies: a village's phone camera calling the county command

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:00:00
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
        "emergencies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("reporter", sa.String(length=100), nullable=False),
        sa.Column("reporter_name", sa.String(length=100), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column(
            "status",
            sa.Enum("active", "ended", name="emergencystatus", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=100), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["org_units.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("emergencies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_emergencies_org_id"), ["org_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_emergencies_org_path"), ["org_path"], unique=False)
        batch_op.create_index(batch_op.f("ix_emergencies_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_emergencies_started_at"), ["started_at"], unique=False)


def downgrade() -> None:
    op.drop_table("emergencies")
