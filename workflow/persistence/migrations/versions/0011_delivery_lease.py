"""A delivery record's claim says when it ends: ``lease_until``, which the notifier that
holds the claim renews while the mail is in its hands.

Before, a ``sending`` record could be taken over once its ``claimed_at`` was older than
the taker's own claim timeout (5 minutes): a killed notifier's mails waited that long.
Now each claim is short (``SUBREQ_CLAIM_LEASE``, seconds) and renewed by its living
owner; the record says until when, so notifiers need not agree on the lease. Claims made
before this revision end as they would have: 5 minutes after ``claimed_at``. A column no
index holds, so claiming and renewing stay updates in place (HOT) on PostgreSQL.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 19:00:00
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLE = "notification_deliveries"
OLD_LEASE = timedelta(minutes=5)
"""The claim timeout every notifier used before this revision."""


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))
    bind = op.get_bind()
    deliveries = sa.table(
        TABLE,
        sa.column("notification_id", sa.String),
        sa.column("status", sa.String),
        sa.column("claimed_at", sa.DateTime),
        sa.column("lease_until", sa.DateTime),
    )
    held = bind.execute(
        sa.select(deliveries.c.notification_id, deliveries.c.claimed_at).where(
            deliveries.c.status == "sending", deliveries.c.claimed_at.is_not(None)
        )
    ).all()  # the claims in hand when it runs: a few per notifier
    for notification_id, claimed_at in held:
        op.execute(
            deliveries.update()
            .where(deliveries.c.notification_id == notification_id)
            .values(lease_until=claimed_at + OLD_LEASE)
        )


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("lease_until")
