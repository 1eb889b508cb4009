"""The outbox's records beyond the command path: what the relay claims and marks, what
operators count and read, and what retention removes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from workflow.persistence.sql import Sql
from workflow.persistence.tables import outbox

RELAY_LOCK_KEY = 0x5E_B2E0
"""One relay publishes at a time per database: that keeps the events of a request in the
order they happened even with relays in several processes."""


@dataclass(frozen=True, slots=True)
class PendingEvent:
    id: int
    event_id: str
    type: str
    payload: bytes
    occurred_at: datetime


class OutboxRecords:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def claim_relay(self) -> bool:
        """Whether this transaction is the only relay at work; no row locks are needed
        then (locking each row cost PostgreSQL a write, and WAL, per event)."""
        return self.sql.try_exclusive(RELAY_LOCK_KEY)

    def unpublished(self, limit: int) -> list[PendingEvent]:
        """The oldest events not yet published, in the order they were written."""
        rows = self.sql.select(
            outbox,
            "published_at IS NULL",
            [limit],
            names=["id", "event_id", "type", "payload", "created_at"],
            suffix=f" ORDER BY id LIMIT {self.sql.mark}",
        )
        return [
            PendingEvent(r["id"], r["event_id"], r["type"], r["payload"].encode(), r["created_at"])
            for r in rows
        ]

    def mark_published(self, ids: Sequence[int], at: datetime) -> None:
        where, param = self.sql.among("id", list(ids))
        self.sql.update_where(outbox, {"published_at": at}, where, [param])

    def backlog(self) -> tuple[int, datetime | None]:
        """How many events wait, and since when the oldest does."""
        count, oldest = self.sql.conn.exec_driver_sql(
            "SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL"
        ).one()
        return int(count), self.sql.loaded(outbox, "created_at", oldest)

    def prune_published(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` events published before ``before``."""
        mark = self.sql.mark
        return self.sql.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE published_at IS NOT "
            f"NULL AND published_at < {mark} LIMIT {mark})",
            [self.sql.value(outbox, "published_at", before), limit],
        )

    def of_type(self, type_: str, request_id: str) -> list[dict[str, Any]]:
        """A request's events of one type, oldest first: payload, written, published."""
        mark = self.sql.mark
        return self.sql.select(
            outbox,
            f"type = {mark} AND request_id = {mark}",
            [type_, request_id],
            names=["payload", "created_at", "published_at"],
            suffix=" ORDER BY id",
        )

    def latest_data(self, type_: str, limit: int) -> list[dict[str, Any]]:
        """The ``data`` of the latest ``limit`` events of one type, oldest first."""
        rows = self.sql.select(
            outbox,
            f"type = {self.sql.mark}",
            [type_, limit],
            names=["payload"],
            suffix=f" ORDER BY id DESC LIMIT {self.sql.mark}",
        )
        return [orjson.loads(r["payload"])["data"] for r in reversed(rows)]
