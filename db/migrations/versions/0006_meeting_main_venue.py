"""meetings.main_venue: where a meeting's main venue is (phone | link | none)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "main_venue",
                sa.Enum("phone", "link", "none", name="mainvenue", native_enum=False, length=32),
                nullable=False,
                server_default="link",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("meetings", schema=None) as batch_op:
        batch_op.drop_column("main_venue")
