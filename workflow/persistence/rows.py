"""The shapes of rows written on the command path and read back as the contract shows them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from workflow.domain.ids import new_id
from workflow.persistence.deliveries import PENDING
from workflow.telemetry import current_traceparent


def outbox_row(
    type_: str,
    at: datetime,
    account_id: str,
    data: Mapping[str, Any],
    request_id: str | None = None,
) -> dict[str, Any]:
    """An outbox row with the event's JSON as the contract gives it."""
    event_id = new_id()
    payload: dict[str, Any] = {
        "event_id": event_id,
        "type": type_,
        "occurred_at": at,
        "account_id": account_id,
    }
    if request_id is not None:
        payload["request_id"] = request_id
    payload["data"] = data
    return {
        "event_id": event_id,
        "type": type_,
        "account_id": account_id,
        "request_id": request_id,
        "payload": orjson.dumps(payload, option=orjson.OPT_UTC_Z).decode(),
        "created_at": at,
        "traceparent": current_traceparent(),
    }


def delivery_row(event: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """The pending delivery record of the ``notification.requested`` outbox row ``event``
    (whose ``data`` is given): due at once, the event's trace kept for the notifier."""
    recipient = data["recipient"]
    at = event["created_at"]
    return {
        "notification_id": data["notification_id"],
        "event_id": event["event_id"],
        "account_id": event["account_id"],
        "request_id": event["request_id"],
        "template": data["template"],
        "locale": data["locale"],
        "recipient_id": recipient["user_id"],
        "recipient_email": recipient["email"],
        "recipient_name": recipient["name"],
        "subject": data["subject"][:1000],
        "status": PENDING,
        "attempts": 0,
        "created_at": at,
        "updated_at": at,
        "traceparent": event["traceparent"],
        "context": data.get("context"),
        "due_at": at,
    }


def history_entry(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "from": row["from_state"],
        "to": row["to_state"],
        "trigger": row["trigger"],
        "actor_id": row["actor_id"],
        "at": row["at"],
        "reason": row["reason"],
        "channel": row.get("channel"),
    }
