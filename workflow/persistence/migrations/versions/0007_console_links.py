"""The console: the channel of each history step and audit row, and the console's links.

Every command before this revision came over AMQP, so existing rows say ``amqp``, except
the sweeper's expiries, which came through no channel.

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("request_transitions", "audit_log"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("channel", sa.String(length=12), nullable=True))
    op.execute("UPDATE request_transitions SET channel = 'amqp' WHERE trigger <> 'expire'")
    op.execute("UPDATE audit_log SET channel = 'amqp'")
    op.create_table(
        "access_links",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("account_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("token_hash", name="pk_access_links"),
    )
    op.create_index("ix_access_links_request_id", "access_links", ["request_id"])
    op.create_index("ix_access_links_expires_at", "access_links", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_access_links_expires_at", table_name="access_links")
    op.drop_index("ix_access_links_request_id", table_name="access_links")
    op.drop_table("access_links")
    for table in ("audit_log", "request_transitions"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("channel")
