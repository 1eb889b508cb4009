"""Email delivery records (R18): one row per notification, written by the command that asks
for it and then the notifier's work list. Claims are single statements that take many
due records at once (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer), and
outcomes are recorded only while the claim that sent them still holds (see
``workflow.notifications.deliveries`` for the protocol)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from workflow.persistence.sql import Sql
from workflow.persistence.tables import notification_deliveries as deliveries

PENDING, SENDING, RETRYING, SENT, FAILED = "pending", "sending", "retrying", "sent", "failed"

CLAIMED_COLUMNS = (
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
    "attempts",
    "claimed_at",
    "due_at",
    "context",
    "traceparent",
)
"""What a claim hands the notifier: everything an email is built from."""

_CLAIMABLE = (PENDING, RETRYING, SENDING)
"""``sending`` too: a claim whose lease ended belongs to a notifier that died."""


class DeliveryRecords:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def claim_due(
        self, token: str, now: datetime, lease_until: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """Take up to ``limit`` records that are due (oldest first) under ``token`` until
        ``lease_until``, counting an attempt each; the claimed rows. Rows another
        transaction is claiming are skipped, never waited for, so notifiers sharing the
        database never take the same record."""
        sql, mark = self.sql, self.sql.mark
        at = sql.value(deliveries, "due_at", now)
        states = ", ".join(f"'{s}'" for s in _CLAIMABLE)
        skip = " FOR UPDATE SKIP LOCKED" if sql.name == "postgresql" else ""
        statement = (
            f"UPDATE notification_deliveries SET status = '{SENDING}', "
            f"attempts = attempts + 1, claim_token = {mark}, claimed_at = {mark}, "
            f"updated_at = {mark}, due_at = {mark} "
            "WHERE notification_id IN (SELECT notification_id FROM notification_deliveries "
            f"WHERE due_at IS NOT NULL AND due_at <= {mark} AND status IN ({states}) "
            f"ORDER BY due_at LIMIT {mark}{skip}) "
            f"RETURNING {', '.join(CLAIMED_COLUMNS)}"
        )
        until = sql.value(deliveries, "due_at", lease_until)
        [found] = sql.run_all([(statement, (token, at, at, until, at, limit))])
        rows = sql.columns(deliveries).rows(CLAIMED_COLUMNS, found or [])
        rows.sort(key=lambda r: r["due_at"])
        return rows

    def settle_all(self, settled: Sequence[tuple[str, str, Mapping[str, Any]]]) -> set[str]:
        """Set each ``(notification_id, token, values)``'s values on its record while the
        token still holds its ``sending`` claim (one statement each, all in one round trip on
        PostgreSQL); the ids it did (a claim taken over after its lease is not ours)."""
        if not settled:
            return set()
        sql, mark = self.sql, self.sql.mark
        columns = sql.columns(deliveries)
        statements = []
        for notification_id, token, values in settled:
            names = list(values)
            sets = ", ".join(f"{n} = {mark}" for n in names)
            statements.append(
                (
                    f"UPDATE notification_deliveries SET {sets}, claim_token = NULL "
                    f"WHERE notification_id = {mark} AND claim_token = {mark} "
                    f"AND status = '{SENDING}' RETURNING notification_id",
                    (*columns.values(values, names), notification_id, token),
                )
            )
        return {rows[0][0] for rows in sql.run_all(statements) if rows}

    def failed_unreported(self, limit: int) -> list[dict[str, Any]]:
        """Records given up whose dead-letter copy the broker has not confirmed yet."""
        mark = self.sql.mark
        return self.sql.select(
            deliveries,
            f"due_at IS NOT NULL AND status = '{FAILED}'",
            [limit],
            suffix=f" ORDER BY due_at LIMIT {mark}",
        )

    def reported(self, notification_ids: Sequence[str]) -> None:
        """Their dead-letter copies are confirmed: nothing is left to do for them."""
        where, param = self.sql.among("notification_id", notification_ids)
        self.sql.update_where(
            deliveries, {"due_at": None}, f"status = '{FAILED}' AND {where}", [param]
        )

    def recent(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        """The latest records, most recently changed first."""
        mark = self.sql.mark
        where, params = (f"status = {mark}", [status]) if status else ("1 = 1", [])
        return self.sql.select(
            deliveries,
            where,
            [*params, limit],
            suffix=f" ORDER BY updated_at DESC, notification_id DESC LIMIT {mark}",
        )

    def of_request(self, request_id: str) -> list[dict[str, Any]]:
        return self.sql.select(deliveries, f"request_id = {self.sql.mark}", [request_id])
