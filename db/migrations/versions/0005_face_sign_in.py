"""face sign-in: enrolment embeddings, sign-ins with evidence, scene snapshots

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=32)


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "face_enrolments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("model_id", sa.String(length=64), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("face_jpeg", sa.LargeBinary(), nullable=False),
        sa.Column("sharpness", sa.Float(), nullable=False),
        sa.Column("face_px", sa.Integer(), nullable=False),
        _when("created_at"),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("face_enrolments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_face_enrolments_member_id"), ["member_id"])
        batch_op.create_index(batch_op.f("ix_face_enrolments_org_path"), ["org_path"])

    op.create_table(
        "meeting_snapshots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column(
            "kind", _enum("snapshotkind", "scene", "unknown_face", "still_picture"), nullable=False
        ),
        _when("at"),
        sa.Column("participant_id", sa.String(length=100), nullable=False),
        sa.Column("venue_name", sa.String(length=100), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=True),
        sa.Column("scene_photo", sa.String(length=500), nullable=False),
        sa.Column("face_photo", sa.String(length=500), nullable=True),
        sa.Column("best_member_id", sa.Integer(), nullable=True),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["meeting_id"], ["meetings.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("meeting_snapshots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_meeting_snapshots_meeting_id"), ["meeting_id"])
        batch_op.create_index(batch_op.f("ix_meeting_snapshots_org_path"), ["org_path"])

    op.create_table(
        "sign_ins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("method", _enum("signinmethod", "face", "manual"), nullable=False),
        _when("at"),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.Column("participant_id", sa.String(length=100), nullable=True),
        sa.Column("venue_name", sa.String(length=100), nullable=True),
        sa.Column("face_photo", sa.String(length=500), nullable=True),
        sa.Column("scene_photo", sa.String(length=500), nullable=True),
        sa.Column(
            "review", _enum("signinreview", "pending", "confirmed", "rejected"), nullable=False
        ),
        sa.Column("reviewed_by", sa.String(length=100), nullable=True),
        _when("reviewed_at", nullable=True),
        sa.ForeignKeyConstraint(["meeting_id"], ["meetings.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("meeting_id", "member_id"),
    )
    with op.batch_alter_table("sign_ins", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sign_ins_meeting_id"), ["meeting_id"])
        batch_op.create_index(batch_op.f("ix_sign_ins_org_path"), ["org_path"])


def downgrade() -> None:
    op.drop_table("sign_ins")
    op.drop_table("meeting_snapshots")
    op.drop_table("face_enrolments")
