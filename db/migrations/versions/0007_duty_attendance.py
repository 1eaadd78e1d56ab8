"""duty attendance: hours rules, the calendar, rosters, leave, sightings, days, corrections,
alerts, webhook deliveries and duty cameras

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 09:57:23.077995
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
        "notification_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=True),
        sa.Column("target", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "delivered",
                "failed",
                name="deliverystatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_notification_deliveries_org_path"), ["org_path"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_notification_deliveries_status"), ["status"], unique=False
        )

    op.create_table(
        "duty_calendar",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("holiday", "workday", name="calendarkind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["org_units.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "date"),
    )
    with op.batch_alter_table("duty_calendar", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duty_calendar_date"), ["date"], unique=False)
        batch_op.create_index(batch_op.f("ix_duty_calendar_org_path"), ["org_path"], unique=False)

    op.create_table(
        "duty_hours_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("season_from", sa.String(length=5), nullable=True),
        sa.Column("season_to", sa.String(length=5), nullable=True),
        sa.Column("weekdays", sa.JSON(), nullable=False),
        sa.Column("start_time", sa.Time(), nullable=False),
        sa.Column("end_time", sa.Time(), nullable=False),
        sa.Column("grace_min", sa.Integer(), nullable=False),
        sa.Column("absent_after_min", sa.Integer(), nullable=False),
        sa.Column("max_gap_min", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(["org_id"], ["org_units.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("duty_hours_rules", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_duty_hours_rules_org_path"), ["org_path"], unique=False
        )

    op.create_table(
        "duty_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("village_id", sa.Integer(), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("late", "absent", name="dutyalertkind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "open",
                "explained",
                "excused",
                "upheld",
                name="dutyalertstatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("explanation", sa.String(length=500), nullable=True),
        sa.Column("explained_by", sa.String(length=100), nullable=True),
        sa.Column("explained_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["org_units.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("member_id", "date", "kind"),
    )
    with op.batch_alter_table("duty_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duty_alerts_date"), ["date"], unique=False)
        batch_op.create_index(batch_op.f("ix_duty_alerts_org_path"), ["org_path"], unique=False)

    op.create_table(
        "duty_cadres",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("village_id", sa.Integer(), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("post", sa.String(length=50), nullable=False),
        sa.Column("first_secretary", sa.Boolean(), nullable=False),
        sa.Column("required_days", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["org_units.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("member_id"),
    )
    with op.batch_alter_table("duty_cadres", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duty_cadres_org_path"), ["org_path"], unique=False)
        batch_op.create_index(batch_op.f("ix_duty_cadres_village_id"), ["village_id"], unique=False)

    op.create_table(
        "duty_cameras",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("village_id", sa.Integer(), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("tv", "rtsp", "kiosk", name="dutycamerakind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("rtsp_url", sa.String(length=500), nullable=True),
        sa.Column("terminal_id", sa.Integer(), nullable=True),
        sa.Column("schedule", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("last_frame_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_recognition_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["terminal_id"], ["terminals.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["org_units.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("duty_cameras", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duty_cameras_org_path"), ["org_path"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_duty_cameras_village_id"), ["village_id"], unique=False
        )

    op.create_table(
        "duty_days",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("village_id", sa.Integer(), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "rest",
                "pending",
                "on_time",
                "late",
                "absent",
                "leave",
                "field_duty",
                name="daystatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "machine_status",
            sa.Enum(
                "rest",
                "pending",
                "on_time",
                "late",
                "absent",
                "leave",
                "field_duty",
                name="daystatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("due_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("departed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("late_min", sa.Integer(), nullable=False),
        sa.Column("present_min", sa.Integer(), nullable=False),
        sa.Column("gaps", sa.JSON(), nullable=False),
        sa.Column("corrected", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["org_units.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("member_id", "date"),
    )
    with op.batch_alter_table("duty_days", schema=None) as batch_op:
        batch_op.create_index("ix_duty_days_path_date", ["org_path", "date"], unique=False)

    op.create_table(
        "duty_leaves",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("leave", "field_duty", name="leavekind", native_enum=False, length=32),
            nullable=False,
        ),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("approver", sa.String(length=50), nullable=False),
        sa.Column("recorded_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_by", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("duty_leaves", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duty_leaves_member_id"), ["member_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_duty_leaves_org_path"), ["org_path"], unique=False)
        batch_op.create_index(batch_op.f("ix_duty_leaves_starts_at"), ["starts_at"], unique=False)

    op.create_table(
        "duty_sightings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("village_id", sa.Integer(), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("camera", sa.String(length=100), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=False),
        sa.Column("first_face", sa.String(length=500), nullable=True),
        sa.Column("first_scene", sa.String(length=500), nullable=True),
        sa.Column("last_face", sa.String(length=500), nullable=True),
        sa.Column("last_scene", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["village_id"],
            ["org_units.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("duty_sightings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_duty_sightings_member_first", ["member_id", "first_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_duty_sightings_org_path"), ["org_path"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_duty_sightings_village_id"), ["village_id"], unique=False
        )

    op.create_table(
        "duty_corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day_id", sa.Integer(), nullable=False),
        sa.Column(
            "from_status",
            sa.Enum(
                "rest",
                "pending",
                "on_time",
                "late",
                "absent",
                "leave",
                "field_duty",
                name="daystatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "to_status",
            sa.Enum(
                "rest",
                "pending",
                "on_time",
                "late",
                "absent",
                "leave",
                "field_duty",
                name="daystatus",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("by", sa.String(length=100), nullable=False),
        sa.Column("by_name", sa.String(length=100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["day_id"], ["duty_days.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("duty_corrections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duty_corrections_day_id"), ["day_id"], unique=False)

    op.create_table(
        "duty_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("org_id", sa.Integer(), nullable=False),
        sa.Column("org_path", sa.String(length=255), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("starts", sa.Date(), nullable=False),
        sa.Column("ends", sa.Date(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["org_id"], ["org_units.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("org_id", "period", "starts"),
    )
    with op.batch_alter_table("duty_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_duty_reports_org_path"), ["org_path"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("duty_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duty_reports_org_path"))
    op.drop_table("duty_reports")
    with op.batch_alter_table("duty_corrections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duty_corrections_day_id"))

    op.drop_table("duty_corrections")
    with op.batch_alter_table("duty_sightings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duty_sightings_village_id"))
        batch_op.drop_index(batch_op.f("ix_duty_sightings_org_path"))
        batch_op.drop_index("ix_duty_sightings_member_first")

    op.drop_table("duty_sightings")
    with op.batch_alter_table("duty_leaves", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duty_leaves_starts_at"))
        batch_op.drop_index(batch_op.f("ix_duty_leaves_org_path"))
        batch_op.drop_index(batch_op.f("ix_duty_leaves_member_id"))

    op.drop_table("duty_leaves")
    with op.batch_alter_table("duty_days", schema=None) as batch_op:
        batch_op.drop_index("ix_duty_days_path_date")

    op.drop_table("duty_days")
    with op.batch_alter_table("duty_cameras", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duty_cameras_village_id"))
        batch_op.drop_index(batch_op.f("ix_duty_cameras_org_path"))

    op.drop_table("duty_cameras")
    with op.batch_alter_table("duty_cadres", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duty_cadres_village_id"))
        batch_op.drop_index(batch_op.f("ix_duty_cadres_org_path"))

    op.drop_table("duty_cadres")
    with op.batch_alter_table("duty_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duty_alerts_org_path"))
        batch_op.drop_index(batch_op.f("ix_duty_alerts_date"))

    op.drop_table("duty_alerts")
    with op.batch_alter_table("duty_hours_rules", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duty_hours_rules_org_path"))

    op.drop_table("duty_hours_rules")
    with op.batch_alter_table("duty_calendar", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_duty_calendar_org_path"))
        batch_op.drop_index(batch_op.f("ix_duty_calendar_date"))

    op.drop_table("duty_calendar")
    with op.batch_alter_table("notification_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notification_deliveries_status"))
        batch_op.drop_index(batch_op.f("ix_notification_deliveries_org_path"))

    op.drop_table("notification_deliveries")
