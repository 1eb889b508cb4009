"""The outbox's records beyond the command path: what the relay claims and marks, what
operators count and read, and what retention removes.

Events are never updated. The relay keeps a mark instead, one small row per published
batch in ``outbox_published``: "every event up to this id is published". That holds only
if no event with a smaller id can still commit after the relay read a bigger one: every
transaction writing events takes :data:`EVENT_ORDER_LOCK_KEY` just before it draws their
ids and keeps it until it committed (``writing.write``), so ids become visible in order.
(SQLite's single writer gives the same by itself.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from workflow.persistence.deliveries import DeliveryRecords
from workflow.persistence.sql import Sql
from workflow.persistence.tables import outbox, outbox_published

RELAY_LOCK_KEY = 0x5E_B2E0
"""One relay publishes at a time per database: that keeps the events of a request in the
order they happened even with relays in several processes."""


EVENT_ORDER_LOCK_KEY = 0x5E_B2E1
"""Held by a transaction writing events from just before their ids are drawn until it
commits: ids then become visible in increasing order, which the relay's mark relies on."""

MARK = "(SELECT coalesce(max(upto_id), 0) FROM outbox_published)"
"""The id up to which every event is published."""


@dataclass(frozen=True, slots=True)
class PendingEvent:
    id: int
    event_id: str
    type: str
    payload: bytes
    occurred_at: datetime
    traceparent: str | None = None
    """The trace of the command that wrote it, captured then (tracing on)."""


class OutboxRecords:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def claim_relay(self) -> bool:
        """Whether this transaction is the only relay at work; no row locks are needed
        then (locking each row cost PostgreSQL a write, and WAL, per event)."""
        return self.sql.try_exclusive(RELAY_LOCK_KEY)

    def lazy_commit(self) -> None:
        """This transaction's commit need not wait for the disk (see ``relay_batch``)."""
        self.sql.lazy_commit()

    def unpublished(self, limit: int) -> list[PendingEvent]:
        """The oldest events not yet published, in the order they were written."""
        rows = self.sql.select(
            outbox,
            f"id > {MARK}",
            [limit],
            names=["id", "event_id", "type", "payload", "created_at", "traceparent"],
            suffix=f" ORDER BY id LIMIT {self.sql.mark}",
        )
        return [
            PendingEvent(
                r["id"],
                r["event_id"],
                r["type"],
                r["payload"].encode(),
                r["created_at"],
                r["traceparent"],
            )
            for r in rows
        ]

    def mark_published(self, upto_id: int, at: datetime) -> None:
        """Every event up to ``upto_id`` is published: one small row, whatever the count."""
        self.sql.insert(outbox_published, [{"upto_id": upto_id, "at": at}])

    def backlog(self) -> tuple[int, datetime | None]:
        """How many events wait, and since when the oldest does."""
        count, oldest = self.sql.conn.exec_driver_sql(
            f"SELECT count(*), min(created_at) FROM outbox WHERE id > {MARK}"
        ).one()
        return int(count), self.sql.loaded(outbox, "created_at", oldest)

    def prune_published(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` events published before ``before``, and the marks older
        than the newest of those (the newest mark always stays: it is the relay's). Never
        an event a delivery record still due refers to, nor any after it: the notifier
        builds the email from it."""
        mark = self.sql.mark
        at = self.sql.value(outbox_published, "at", before)
        upto = self.sql.scalar_rows(
            f"SELECT max(upto_id) FROM outbox_published WHERE at < {mark}", [at]
        )[0]
        if upto is None:
            return 0
        needed = DeliveryRecords(self.sql).oldest_due_event()
        if needed is not None:
            upto = min(upto, needed - 1)
        removed = self.sql.execute(
            f"DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE id <= {mark} "
            f"ORDER BY id LIMIT {mark})",
            [upto, limit],
        )
        oldest_kept = self.sql.scalar_rows("SELECT min(id) FROM outbox", [])[0]
        if oldest_kept is None or oldest_kept > upto:
            self.sql.execute(f"DELETE FROM outbox_published WHERE upto_id < {mark}", [upto])
        return removed

    def of_type(self, type_: str, request_id: str) -> list[dict[str, Any]]:
        """A request's events of one type, oldest first: payload, written, published (the
        time of the first mark that covers it; ``None``: not yet)."""
        mark = self.sql.mark
        rows = self.sql.select(
            outbox,
            f"type = {mark} AND request_id = {mark}",
            [type_, request_id],
            names=["id", "payload", "created_at"],
            suffix=" ORDER BY id",
        )
        for row in rows:
            found = self.sql.scalar_rows(
                f"SELECT at FROM outbox_published WHERE upto_id >= {mark} ORDER BY upto_id LIMIT 1",
                [row.pop("id")],
            )
            row["published_at"] = self.sql.loaded(
                outbox_published, "at", found[0] if found else None
            )
        return rows

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
