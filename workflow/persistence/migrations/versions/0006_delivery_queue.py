"""Delivery records as the notifier's work list: written by the command that asks for the
email, with what the templates render and when the record is next due.

The notifier no longer reads a broker queue; it claims due records. Notifications the
queue-fed notifier had not taken on yet (``notification.requested`` in the outbox with no
delivery record) become pending records here, so an upgrade loses no email.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LEASE = timedelta(minutes=5)
"""The claim timeout the queue-fed notifier used: its ``sending`` claims are due after it."""


def upgrade() -> None:
    with op.batch_alter_table("notification_deliveries") as batch:
        batch.add_column(sa.Column("context", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("due_at", sa.DateTime(), nullable=True))
    op.create_index(
        "ix_notification_deliveries_due",
        "notification_deliveries",
        ["due_at"],
        unique=False,
        postgresql_where=sa.text("due_at IS NOT NULL"),
        sqlite_where=sa.text("due_at IS NOT NULL"),
    )
    bind = op.get_bind()
    deliveries = sa.table(
        "notification_deliveries",
        sa.column("status", sa.String),
        sa.column("claimed_at", sa.DateTime),
        sa.column("updated_at", sa.DateTime),
        sa.column("due_at", sa.DateTime),
    )
    op.execute(
        deliveries.update()
        .where(deliveries.c.status == "retrying")
        .values(due_at=deliveries.c.updated_at)
    )
    for (claimed_at,) in bind.execute(
        sa.select(deliveries.c.claimed_at).where(deliveries.c.status == "sending").distinct()
    ):
        op.execute(
            deliveries.update()
            .where(deliveries.c.status == "sending", deliveries.c.claimed_at == claimed_at)
            .values(due_at=claimed_at + LEASE)
        )
    _adopt_unclaimed(bind)


def _adopt_unclaimed(bind: sa.Connection) -> None:
    """A pending record for every ``notification.requested`` nobody took on yet."""
    outbox = sa.table(
        "outbox",
        sa.column("type", sa.String),
        sa.column("payload", sa.Text),
        sa.column("created_at", sa.DateTime),
        sa.column("traceparent", sa.String),
    )
    deliveries = sa.table(
        "notification_deliveries",
        *(
            sa.column(name)
            for name in (
                "notification_id",
                "event_id",
                "account_id",
                "request_id",
                "template",
                "locale",
                "recipient_id",
                "recipient_email",
                "recipient_name",
                "subject",
                "status",
                "attempts",
                "created_at",
                "updated_at",
                "traceparent",
                "context",
                "due_at",
            )
        ),
    )
    known = {row[0] for row in bind.execute(sa.select(deliveries.c.notification_id))}
    found = bind.execute(
        sa.select(outbox.c.payload, outbox.c.created_at, outbox.c.traceparent).where(
            outbox.c.type == "notification.requested"
        )
    )
    for payload, created_at, traceparent in found:
        record = _pending(json.loads(payload), created_at, traceparent)
        if record is not None and record["notification_id"] not in known:
            known.add(record["notification_id"])
            bind.execute(deliveries.insert().values(**record))


def _pending(event: dict[str, Any], created_at: Any, traceparent: Any) -> dict[str, Any] | None:
    data = event.get("data") or {}
    recipient = data.get("recipient") or {}
    if not data.get("notification_id"):
        return None
    context = data.get("context")
    return {
        "notification_id": data["notification_id"],
        "event_id": event.get("event_id"),
        "account_id": event.get("account_id"),
        "request_id": event.get("request_id"),
        "template": data.get("template") or "",
        "locale": data.get("locale") or "en",
        "recipient_id": recipient.get("user_id"),
        "recipient_email": recipient.get("email") or "",
        "recipient_name": recipient.get("name"),
        "subject": data.get("subject"),
        "status": "pending",
        "attempts": 0,
        "created_at": created_at,
        "updated_at": created_at,
        "traceparent": traceparent,
        "context": json.dumps(context) if context is not None else None,
        "due_at": created_at,
    }


def downgrade() -> None:
    op.drop_index("ix_notification_deliveries_due", table_name="notification_deliveries")
    with op.batch_alter_table("notification_deliveries") as batch:
        batch.drop_column("due_at")
        batch.drop_column("context")
