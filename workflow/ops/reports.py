"""Read-only queries for operators (the ``subreq`` command line), outside any command.

Requests come back as the contract's request view (the same dict replies and events
carry), so what an operator reads is what the account's members were told. Database
failures are translated here, at the persistence boundary, into errors that name
``SUBREQ_DATABASE_URL``: the command line prints them instead of a SQLAlchemy traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from workflow.app.views import request_view, request_views
from workflow.contract.names import NOTIFICATION_REQUESTED
from workflow.errors import SubreqError, TransientError
from workflow.notifications.deliveries import of_request, recent
from workflow.persistence import tables as t
from workflow.persistence.database import Database
from workflow.persistence.store import Store

UNDEFINED_TABLE = "42P01"  # PostgreSQL's SQLSTATE for a missing table


class DatabaseUnavailable(TransientError):
    """Raised when the database of ``SUBREQ_DATABASE_URL`` cannot be opened or reached."""


class SchemaMissing(SubreqError):
    """Raised when the database has none of subreq's tables: it was never migrated."""


def describe(db: Database) -> str:
    """The URL as an operator may see it: never with its password."""
    return db.url.render_as_string(hide_password=True)


@contextmanager
def database_errors(db: Database) -> Iterator[None]:
    """Turn "cannot connect" and "no such table" into errors that say what to fix."""
    try:
        yield
    except DatabaseUnavailable:
        raise
    except (DBAPIError, TransientError) as exc:
        # ``Database.transaction`` has already wrapped a transient failure: look beneath.
        cause = exc.__cause__ if isinstance(exc, TransientError) else exc
        if isinstance(cause, DBAPIError) and _missing_table(cause):
            raise SchemaMissing(
                f"the database of SUBREQ_DATABASE_URL ({describe(db)}) has no subreq schema: "
                "run `subreq db upgrade` first"
            ) from None
        if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError | InterfaceError):
            raise  # a bug, not the environment: the traceback is what a developer needs
        reason = cause.orig if isinstance(cause, DBAPIError) else exc
        raise DatabaseUnavailable(
            # Drivers spread one reason over several lines.
            f"SUBREQ_DATABASE_URL: cannot use {describe(db)}: {' '.join(str(reason).split())}"
        ) from None


def _missing_table(exc: DBAPIError) -> bool:
    if getattr(exc.orig, "sqlstate", None) == UNDEFINED_TABLE:
        return True
    return "no such table" in str(exc.orig).lower()


@contextmanager
def reading(db: Database) -> Iterator[Connection]:
    """One connection for a report, its database errors translated; nothing is written."""
    with database_errors(db), db.transaction() as conn:
        yield conn


def _store(conn: Connection) -> Store:
    # Reports never lock, so the dialect only matters for completeness.
    return Store(conn, is_postgres=conn.dialect.name == "postgresql")


def find_request(conn: Connection, request_id: str) -> dict[str, Any] | None:
    """The request view, or ``None`` when no request has this id."""
    store = _store(conn)
    row = store.request(request_id)
    return None if row is None else request_view(store, row)


def account_requests(
    conn: Connection, account_id: str, state: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Views of an account's requests, newest first."""
    store = _store(conn)
    return request_views(store, store.requests(account_id, state, limit))


def request_notifications(conn: Connection, request_id: str) -> list[dict[str, Any]]:
    """Every notification asked for about a request (R14, R16, R17), oldest first: whether
    the relay has published it, and what the email notifier did with it (``delivery``:
    ``None`` until a notifier took it on)."""
    delivered = of_request(conn, request_id)
    rows = conn.execute(
        select(t.outbox.c.payload, t.outbox.c.created_at, t.outbox.c.published_at)
        .where(t.outbox.c.type == NOTIFICATION_REQUESTED, t.outbox.c.request_id == request_id)
        .order_by(t.outbox.c.id)
    ).mappings()
    found = []
    for row in rows:
        data = orjson.loads(row["payload"])["data"]
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


def notifications_requested(conn: Connection, limit: int = 1000) -> list[dict[str, Any]]:
    """The latest ``notification.requested`` events still in the outbox, oldest first."""
    rows = conn.execute(
        select(t.outbox.c.payload)
        .where(t.outbox.c.type == NOTIFICATION_REQUESTED)
        .order_by(t.outbox.c.id.desc())
        .limit(limit)
    ).scalars()
    return [orjson.loads(payload)["data"] for payload in reversed(list(rows))]


def _delivery(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    keys = ("status", "attempts", "last_error", "sent_at", "updated_at", "message_id")
    return {key: record[key] for key in keys}


def deliveries(
    conn: Connection, status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Recent email deliveries and failures (R18), most recently changed first."""
    return recent(conn, status, limit)


def audit_entries(
    conn: Connection, account_id: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Refused commands (R15), newest first, optionally of one account."""
    query = select(t.audit_log)
    if account_id is not None:
        query = query.where(t.audit_log.c.account_id == account_id)
    query = query.order_by(t.audit_log.c.at.desc(), t.audit_log.c.id.desc()).limit(limit)
    return [
        {
            "at": row["at"],
            "command": row["command"],
            "actor_id": row["actor_id"],
            "account_id": row["account_id"],
            "request_id": row["request_id"],
            "code": row["code"],
            "message": row["message"],
            "details": row["details"],
            "idempotency_key": row["idempotency_key"],
        }
        for row in conn.execute(query).mappings()
    ]
