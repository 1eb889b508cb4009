"""Claiming committed outbox rows for publication, and marking them published.

The broker is not known here: the relay passes a ``publish`` callable that
returns only once the broker confirmed every event. Rows are marked in the same
transaction that claimed them, so a crash before the confirm leaves them
unpublished (published again later: consumers dedupe on ``event_id``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, text

from workflow.persistence.database import Database
from workflow.persistence.rawsql import RawSql
from workflow.persistence.tables import outbox

# One relay publishes at a time per database: that keeps the events of a request in
# the order they happened even with relays in several processes.
RELAY_LOCK_KEY = 0x5E_B2E0


@dataclass(frozen=True, slots=True)
class PendingEvent:
    id: int
    event_id: str
    type: str
    payload: bytes


def relay_batch(
    db: Database, publish: Callable[[Sequence[PendingEvent]], None], limit: int = 500
) -> int:
    """Publish up to ``limit`` unpublished events in order; returns how many."""
    with db.transaction() as conn:
        if (
            db.is_postgres
            and not conn.execute(
                text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY}
            ).scalar()
        ):
            return 0
        # No row locks: the advisory lock already makes this the only relay at work, and
        # locking each row cost PostgreSQL a write (and WAL) per event.
        sql = RawSql(conn)
        mark = "%s" if db.is_postgres else "?"
        events = [
            PendingEvent(r["id"], r["event_id"], r["type"], r["payload"].encode())
            for r in sql.select(
                outbox,
                "published_at IS NULL",
                [limit],
                names=["id", "event_id", "type", "payload"],
                suffix=f" ORDER BY id LIMIT {mark}",
            )
        ]
        if not events:
            return 0
        publish(events)
        where, ids = sql.among("id", [e.id for e in events])
        sql.update_where(outbox, {"published_at": datetime.now(UTC)}, where, [ids])
        return len(events)


def backlog(db: Database) -> tuple[int, datetime | None]:
    """How many events wait, and since when the oldest does."""
    with db.engine.connect() as conn:
        row = conn.execute(
            select(func.count(), func.min(outbox.c.created_at)).where(
                outbox.c.published_at.is_(None)
            )
        ).one()
        oldest = row[1]
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return row[0], oldest
