"""Read-only queries for operators (the ``subreq`` command line), outside any command.

Requests come back as the contract's request view (the same dict replies and events
carry), so what an operator reads is what the account's members were told. Database
failures come out of ``reading`` as errors that name ``SUBREQ_DATABASE_URL``: the
command line prints them instead of a driver's traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from workflow.app.views import request_view, request_views
from workflow.contract.names import NOTIFICATION_REQUESTED
from workflow.errors import DatabaseUnavailable, SchemaMissing
from workflow.notifications.deliveries import of_notifications, recent
from workflow.persistence.database import Database, database_errors, describe
from workflow.persistence.sqlstore import SqlStore

__all__ = [
    "DatabaseUnavailable",
    "SchemaMissing",
    "account_requests",
    "audit_entries",
    "database_errors",
    "deliveries",
    "describe",
    "find_request",
    "history_trace_ids",
    "notifications_requested",
    "reading",
    "request_notifications",
]


@contextmanager
def reading(db: Database) -> Iterator[SqlStore]:
    """One store for a report, its database errors translated; nothing is locked."""
    with database_errors(db), db.store(lock=False) as store:
        yield store


def find_request(store: SqlStore, request_id: str) -> dict[str, Any] | None:
    """The request view, or ``None`` when no request has this id."""
    row = store.request(request_id)
    return None if row is None else request_view(store, row)


def history_trace_ids(store: SqlStore, request_id: str) -> list[str | None]:
    """The trace id of each history step of a request (oldest first), where it was traced."""
    return [
        None if tp is None else tp.split("-")[1] for tp in store.queries.history_traces(request_id)
    ]


def account_requests(
    store: SqlStore, account_id: str, state: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Views of an account's requests, newest first."""
    return request_views(store, store.requests(account_id, state, limit))


def request_notifications(store: SqlStore, request_id: str) -> list[dict[str, Any]]:
    """Every notification asked for about a request (R14, R16, R17, R20-R22), oldest first:
    whether the relay has published it, and what the email notifier did with it (``delivery``:
    ``None`` until a notifier took it on)."""
    events = store.outbox.of_type(NOTIFICATION_REQUESTED, request_id)
    datas = [orjson.loads(row["payload"])["data"] for row in events]
    delivered = of_notifications(store, [data["notification_id"] for data in datas])
    found = []
    for row, data in zip(events, datas, strict=True):
        found.append(
            {
                "notification_id": data["notification_id"],
                "template": data["template"],
                "locale": data["locale"],
                "recipient": data["recipient"],
                "subject": data["subject"],
                "requested_at": row["created_at"],
                "published_at": row["published_at"],
                "delivery": _delivery(delivered.get(data["notification_id"])),
            }
        )
    return found


def notifications_requested(store: SqlStore, limit: int = 1000) -> list[dict[str, Any]]:
    """The latest ``notification.requested`` events still in the outbox, oldest first."""
    return store.outbox.latest_data(NOTIFICATION_REQUESTED, limit)


def _delivery(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    keys = ("status", "attempts", "last_error", "sent_at", "updated_at", "message_id")
    return {key: record[key] for key in keys}


def deliveries(store: SqlStore, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """Recent email deliveries and failures (R18), most recently changed first."""
    return recent(store, status, limit)


AUDIT_FIELDS = (
    "at",
    "command",
    "actor_id",
    "account_id",
    "request_id",
    "code",
    "message",
    "details",
    "idempotency_key",
    "channel",
)


def audit_entries(
    store: SqlStore, account_id: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Refused commands (R15), newest first, optionally of one account."""
    return [
        {name: row[name] for name in AUDIT_FIELDS}
        for row in store.queries.audit_entries(account_id, limit)
    ]
