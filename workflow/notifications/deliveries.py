"""Delivery records: at most one email per notification, whatever is redelivered (R18).

The notifier *claims* a notification in a committed transaction before it talks
to the SMTP server, and marks it sent (adding ``notification.sent`` to the outbox)
in one transaction afterwards. A second copy of the event (broker redelivery, a
relay that published twice, another notifier) finds the record and sends nothing.

Email cannot be exactly-once: a process that dies after the server accepted the
mail and before the "sent" commit leaves a claim that goes stale after
``stale_after``; the next delivery takes it over and sends once more, with the same
``Message-ID`` so receivers can tell. Everything else (SMTP down, a rejection, a
template error) ends with the reason in the record.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

import orjson

from workflow.contract.names import NOTIFICATION_SENT
from workflow.errors import SubreqError
from workflow.persistence.database import Database
from workflow.persistence.deliveries import FAILED, RETRYING, SENDING, SENT
from workflow.persistence.sqlstore import SqlStore
from workflow.telemetry import current_traceparent

ERROR_LIMIT = 1000
"""Characters of an error kept in the record; SMTP servers can be verbose."""


class BadNotice(SubreqError, ValueError):
    """Raised when an event body is not a ``notification.requested`` event at all."""


@dataclass(frozen=True)
class Notice:
    """One ``notification.requested`` event, as the notifier needs it."""

    notification_id: str
    event_id: str | None
    account_id: str
    request_id: str | None
    template: str
    locale: str
    recipient_id: str | None
    email: str
    name: str
    subject: str
    text: str
    context: Mapping[str, Any] | None = field(default=None, hash=False, compare=False)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_notice(body: bytes) -> Notice:
    """The notice in an event body; only a missing ``notification_id`` makes it unusable,
    any other gap is found (and recorded) when the notifier checks it."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadNotice(f"body is not JSON: {exc}") from None
    data = event.get("data") if isinstance(event, dict) else None
    if not isinstance(data, dict):
        raise BadNotice("body is not an event with a data object")
    notification_id = data.get("notification_id")
    if not isinstance(notification_id, str) or not 0 < len(notification_id) <= 36:
        raise BadNotice("data.notification_id is missing or longer than 36 characters")
    recipient = data.get("recipient")
    if not isinstance(recipient, dict):
        recipient = {}
    context = data.get("context")
    return Notice(
        notification_id=notification_id,
        event_id=_text(event.get("event_id"))[:36] or None,
        account_id=_text(event.get("account_id"))[:128],
        request_id=_text(event.get("request_id"))[:36] or None,
        template=_text(data.get("template"))[:64],
        locale=_text(data.get("locale"))[:16] or "en",
        recipient_id=_text(recipient.get("user_id"))[:128] or None,
        email=_text(recipient.get("email"))[:254],
        name=_text(recipient.get("name"))[:200],
        subject=_text(data.get("subject")),
        text=_text(data.get("text")),
        context=context if isinstance(context, dict) else None,
    )


class ClaimStatus(Enum):
    CLAIMED = "claimed"  # ours to send now
    SENT = "sent"  # somebody sent it already
    FAILED = "failed"  # it failed for good already (it is in the dead letters)
    BUSY = "busy"  # another notifier holds a fresh claim: look again later


@dataclass(frozen=True)
class Claim:
    outcome: ClaimStatus
    attempt: int = 0
    token: str | None = None
    busy_until: datetime | None = None


def claim(
    db: Database,
    notice: Notice,
    now: datetime,
    stale_after: timedelta,
    previous: str | None = None,
) -> Claim:
    """Take the notification on, in a committed transaction, before any SMTP traffic.

    The first claim inserts the record; a later one may take over only a record that
    waits for a retry, whose ``sending`` claim is older than ``stale_after`` (its
    notifier died), or that is still the caller's own ``previous`` claim (recording
    its outcome failed). Both are single statements, so two notifiers never both win."""
    token = str(uuid.uuid4())
    with db.store(lock=False) as store:
        records = store.deliveries
        inserted = records.insert_claim(
            {
                "notification_id": notice.notification_id,
                "event_id": notice.event_id,
                "account_id": notice.account_id,
                "request_id": notice.request_id,
                "template": notice.template,
                "locale": notice.locale,
                "recipient_id": notice.recipient_id,
                "recipient_email": notice.email,
                "recipient_name": notice.name,
                "subject": notice.subject[:1000],
                "status": SENDING,
                "attempts": 1,
                "claim_token": token,
                "claimed_at": now,
                "created_at": now,
                "updated_at": now,
                "traceparent": current_traceparent(),
            }
        )
        if inserted:
            return Claim(ClaimStatus.CLAIMED, 1, token)
        taken = records.take_over(notice.notification_id, token, now, now - stale_after, previous)
        current = records.state(notice.notification_id)
    if taken:
        return Claim(ClaimStatus.CLAIMED, current["attempts"], token)
    if current["status"] == SENT:
        return Claim(ClaimStatus.SENT, current["attempts"])
    if current["status"] == FAILED:
        return Claim(ClaimStatus.FAILED, current["attempts"])
    busy_until = current["claimed_at"] + stale_after
    return Claim(ClaimStatus.BUSY, current["attempts"], busy_until=busy_until)


def mark_sent(db: Database, notice: Notice, token: str, now: datetime, message_id: str) -> bool:
    """Record the delivery and emit ``notification.sent``, together; ``False`` when the
    claim was no longer ours (taken over as stale), and nothing is emitted twice."""
    with db.store() as store:
        # The account lock first, as every command takes it: the event's outbox id then
        # follows those of the request's events committed before it, and the relay, which
        # publishes in id order, keeps the request's events in order.
        store.lock_account(notice.account_id)
        done = store.deliveries.settle(
            notice.notification_id,
            token,
            {
                "status": SENT,
                "sent_at": now,
                "updated_at": now,
                "message_id": message_id,
                "claim_token": None,
                "last_error": None,
            },
        )
        if not done:
            return False
        store.add_event(
            NOTIFICATION_SENT,
            now,
            notice.account_id,
            {
                "notification_id": notice.notification_id,
                "recipient": {
                    "user_id": notice.recipient_id,
                    "email": notice.email,
                    "name": notice.name,
                },
                "template": notice.template,
                "message_id": message_id,
            },
            notice.request_id,
        )
        return True


def _release(
    db: Database, notice: Notice, token: str, now: datetime, status: str, error: str
) -> None:
    values = {
        "status": status,
        "claim_token": None,
        "last_error": error[:ERROR_LIMIT],
        "updated_at": now,
    }
    with db.store(lock=False) as store:
        store.deliveries.settle(notice.notification_id, token, values)


def mark_retrying(db: Database, notice: Notice, token: str, now: datetime, error: str) -> None:
    """Release the claim after a failure a retry may cure; the next claim takes it over."""
    _release(db, notice, token, now, RETRYING, error)


def mark_failed(db: Database, notice: Notice, token: str, now: datetime, error: str) -> None:
    """The notification will not be sent: the reason stays with it."""
    _release(db, notice, token, now, FAILED, error)


# --- reading, for operators ------------------------------------------------------------


def _as_dict(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        "notification_id": row["notification_id"],
        "request_id": row["request_id"],
        "account_id": row["account_id"],
        "template": row["template"],
        "locale": row["locale"],
        "recipient": {
            "user_id": row["recipient_id"],
            "email": row["recipient_email"],
            "name": row["recipient_name"],
        },
        "subject": row["subject"],
        "status": row["status"],
        "attempts": row["attempts"],
        "last_error": row["last_error"],
        "message_id": row["message_id"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "sent_at": row["sent_at"],
    }


def recent(store: SqlStore, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The latest deliveries and failures, most recently changed first."""
    return [_as_dict(row) for row in store.deliveries.recent(status, limit)]


def of_request(store: SqlStore, request_id: str) -> dict[str, dict[str, Any]]:
    """The delivery records of one request's notifications, by notification id."""
    return {
        row["notification_id"]: _as_dict(row) for row in store.deliveries.of_request(request_id)
    }
