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
    (whose ``data`` is given), due at once. It refers to the event by its outbox id, drawn
    when the two are written together (``writing._write_events``); ``event_id`` says which
    event that is."""
    at = event["created_at"]
    return {
        "notification_id": data["notification_id"],
        "event_id": event["event_id"],
        "template": data["template"],
        "recipient_email": data["recipient"]["email"],
        "status": PENDING,
        "attempts": 0,
        "updated_at": at,
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
