"""Reads and upkeep outside the command path: requests past a deadline, the pending
backlog, the audit log, and the retention of idempotency records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workflow.contract.names import PENDING
from workflow.persistence.sql import Sql
from workflow.persistence.tables import audit_log, processed_commands, requests

TIMER_COLUMNS = frozenset({"warned_at", "escalated_at"})
"""The columns ``due_requests`` may ask to be empty (it writes their names into SQL)."""


class Queries:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def due_requests(self, cutoff: datetime, *, limit: int, unset: str | None = None) -> list[str]:
        """Pending requests created before ``cutoff``, oldest first (an indexed scan); with
        ``unset``, only those where that timer column is still empty."""
        where = ""
        if unset is not None:
            if unset not in TIMER_COLUMNS:
                raise ValueError(f"{unset!r} is not a timer column of requests")
            where = f" AND {unset} IS NULL"
        return self._pending_before(cutoff, where, [], limit)

    def reminders_due(
        self, cutoff: datetime, *, below: int, last_before: datetime | None, limit: int
    ) -> list[str]:
        """Pending requests created before ``cutoff`` with fewer than ``below`` reminders
        sent, none of them since ``last_before`` (``None``: none sent at all)."""
        mark = self.sql.mark
        if last_before is None:
            return self._pending_before(cutoff, " AND reminders = 0", [], limit)
        return self._pending_before(
            cutoff,
            f" AND reminders < {mark} AND (reminded_at IS NULL OR reminded_at < {mark})",
            [below, self.sql.value(requests, "reminded_at", last_before)],
            limit,
        )

    def _pending_before(
        self, cutoff: datetime, where: str, params: list[Any], limit: int
    ) -> list[str]:
        mark = self.sql.mark
        return self.sql.scalar_rows(
            f"SELECT request_id FROM requests WHERE state = '{PENDING}' AND created_at < {mark}"
            f"{where} ORDER BY created_at, request_id LIMIT {mark}",
            [self.sql.value(requests, "created_at", cutoff), *params, limit],
        )

    def history_traces(self, request_id: str) -> list[str | None]:
        """The ``traceparent`` of each of a request's history steps, oldest first."""
        return self.sql.scalar_rows(
            f"SELECT traceparent FROM request_transitions WHERE request_id = {self.sql.mark} "
            "ORDER BY id",
            [request_id],
        )

    def pending_backlog(self) -> tuple[int, datetime | None]:
        """How many requests wait for a decision, and since when the oldest does."""
        count, oldest = self.sql.conn.exec_driver_sql(
            f"SELECT count(*), min(created_at) FROM requests WHERE state = '{PENDING}'"
        ).one()
        return int(count), self.sql.loaded(requests, "created_at", oldest)

    def audit_entries(self, account_id: str | None, limit: int) -> list[dict[str, Any]]:
        """Refused commands (R15), newest first, optionally of one account."""
        mark = self.sql.mark
        where, params = ("account_id = " + mark, [account_id]) if account_id else ("1 = 1", [])
        return self.sql.select(
            audit_log, where, [*params, limit], suffix=f" ORDER BY at DESC, id DESC LIMIT {mark}"
        )

    def prune_replies(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` idempotency records stored before ``before``."""
        mark = self.sql.mark
        return self.sql.execute(
            "DELETE FROM processed_commands WHERE key IN (SELECT key FROM processed_commands "
            f"WHERE processed_at < {mark} LIMIT {mark})",
            [self.sql.value(processed_commands, "processed_at", before), limit],
        )
