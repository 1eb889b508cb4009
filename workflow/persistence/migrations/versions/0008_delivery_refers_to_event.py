"""Delivery records refer to their ``notification.requested`` event instead of copying it.

A record keeps its outbox row's id (``outbox_id``), the template and the recipient's
address; the notifier reads the rest (context, subject, recipient, account, request, trace)
from the event. Existing records get the id of their event (matched on ``event_id``, one
scan of the outbox). A record whose event was already pruned keeps it sendable and
readable another way: the event is rebuilt from its columns into ``event`` (the trace of
such a record is not kept). The index on ``updated_at`` goes, with the columns.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 17:00:00
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TABLE = "notification_deliveries"
FILLFACTOR = 40
"""Room on each page for a claim's HOT update of its rows (as tables.py says)."""

COPIED = (
    ("event_id", sa.String(length=36)),
    ("account_id", sa.String(length=128)),
    ("request_id", sa.String(length=36)),
    ("locale", sa.String(length=16)),
    ("recipient_id", sa.String(length=128)),
    ("recipient_name", sa.String(length=200)),
    ("subject", sa.Text()),
    ("created_at", sa.DateTime()),
    ("traceparent", sa.String(length=55)),
    ("context", sa.JSON()),
)
"""The columns before 0008 whose values the event holds (in the order they had)."""


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.add_column(sa.Column("outbox_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("event", sa.Text(), nullable=True))
    op.execute(
        f"UPDATE {TABLE} SET outbox_id = o.id FROM outbox AS o "
        f"WHERE o.event_id = {TABLE}.event_id AND o.type = 'notification.requested'"
    )
    bind = op.get_bind()
    names = [name for name, _ in COPIED]
    orphans = bind.execute(
        sa.text(
            f"SELECT notification_id, template, recipient_email, {', '.join(names)} "
            f"FROM {TABLE} WHERE outbox_id IS NULL"
        )
    ).mappings()
    for row in list(orphans):
        bind.execute(
            sa.text(f"UPDATE {TABLE} SET event = :event WHERE notification_id = :id"),
            {"event": json.dumps(_rebuilt(row)), "id": row["notification_id"]},
        )
    op.drop_index("ix_notification_deliveries_request_id", table_name=TABLE)
    op.drop_index("ix_notification_deliveries_updated_at", table_name=TABLE)
    with op.batch_alter_table(TABLE) as batch:
        for name in names:
            batch.drop_column(name)
    if bind.dialect.name == "postgresql":  # pages written from now on leave the room
        op.execute(f"ALTER TABLE {TABLE} SET (fillfactor = {FILLFACTOR})")


def _rebuilt(row: Any) -> dict[str, Any]:
    """The ``notification.requested`` event of a record whose outbox row is gone."""
    context = row["context"]
    if isinstance(context, str):
        context = json.loads(context)
    data: dict[str, Any] = {
        "notification_id": row["notification_id"],
        "template": row["template"],
        "locale": row["locale"],
        "recipient": {
            "user_id": row["recipient_id"],
            "email": row["recipient_email"],
            "name": row["recipient_name"],
        },
        "subject": row["subject"],
    }
    if context is not None:
        data["context"] = context
    event: dict[str, Any] = {
        "event_id": row["event_id"],
        "type": "notification.requested",
        "occurred_at": _iso(row["created_at"]),
        "account_id": row["account_id"],
    }
    if row["request_id"] is not None:
        event["request_id"] = row["request_id"]
    event["data"] = data
    return event


def _iso(value: Any) -> str | None:
    """A stored (naive UTC) time as the contract writes it; SQLite hands back text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return f"{value.isoformat()}Z"


def downgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        for name, kind in COPIED:
            batch.add_column(sa.Column(name, kind, nullable=True))
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            f"SELECT d.notification_id, d.updated_at, coalesce(o.payload, d.event) AS payload, "
            f"o.created_at, o.traceparent FROM {TABLE} AS d "
            f"LEFT JOIN outbox AS o ON o.id = d.outbox_id"
        )
    ).mappings()
    for row in list(rows):
        event = json.loads(row["payload"]) if row["payload"] else {}
        data = event.get("data") or {}
        recipient = data.get("recipient") or {}
        context = data.get("context")
        bind.execute(
            sa.text(
                f"UPDATE {TABLE} SET event_id = :event_id, account_id = :account_id, "
                "request_id = :request_id, locale = :locale, recipient_id = :recipient_id, "
                "recipient_name = :recipient_name, subject = :subject, created_at = :created_at, "
                "traceparent = :traceparent, context = :context WHERE notification_id = :id"
            ),
            {
                "id": row["notification_id"],
                "event_id": event.get("event_id"),
                "account_id": event.get("account_id"),
                "request_id": event.get("request_id"),
                "locale": data.get("locale") or "en",
                "recipient_id": recipient.get("user_id"),
                "recipient_name": recipient.get("name"),
                "subject": data.get("subject"),
                "created_at": row["created_at"] or row["updated_at"],
                "traceparent": row["traceparent"],
                "context": None if context is None else json.dumps(context),
            },
        )
    with op.batch_alter_table(TABLE) as batch:
        batch.alter_column("locale", existing_type=sa.String(length=16), nullable=False)
        batch.alter_column("created_at", existing_type=sa.DateTime(), nullable=False)
        batch.drop_column("event")
        batch.drop_column("outbox_id")
    op.create_index("ix_notification_deliveries_request_id", TABLE, ["request_id"])
    op.create_index("ix_notification_deliveries_updated_at", TABLE, ["updated_at"])
    if bind.dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {TABLE} RESET (fillfactor)")
