"""hidden views: supervisors watching meetings unannounced

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hidden_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("supervisor", sa.String(length=100), nullable=False),
        sa.Column("supervisor_name", sa.String(length=100), nullable=False),
        sa.Column("room_id", sa.String(length=64), nullable=False),
        sa.Column("room_name", sa.String(length=100), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("hidden_views", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hidden_views_org_path"), ["org_path"], unique=False)
        batch_op.create_index(batch_op.f("ix_hidden_views_room_id"), ["room_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_hidden_views_started_at"), ["started_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_hidden_views_supervisor"), ["supervisor"], unique=False
        )


def downgrade() -> None:
    op.drop_table("hidden_views")
