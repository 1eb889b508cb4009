"""The sweeper's timers on each request: reminders counted (R20), the expiry warning (R21)
and the escalation (R22) recorded when they fire.

A request reminded before this revision had its one reminder: it counts as one sent.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 19:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.add_column(
            sa.Column("reminders", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch.add_column(sa.Column("warned_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("escalated_at", sa.DateTime(), nullable=True))
    op.execute("UPDATE requests SET reminders = 1 WHERE reminded_at IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("escalated_at")
        batch.drop_column("warned_at")
        batch.drop_column("reminders")
