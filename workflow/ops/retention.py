"""Bounded clean-up of rows whose job is done, so tables stop growing with traffic.

Idempotency records are kept at least as long as the contract promises (7 days);
published events as long as operators may want to inspect or replay them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select

from workflow.persistence.database import Database
from workflow.persistence.tables import outbox, processed_commands

KEEP_REPLIES = timedelta(days=7)
KEEP_PUBLISHED = timedelta(days=7)
CHUNK = 5000


def prune(db: Database, now: datetime | None = None, chunk: int = CHUNK) -> int:
    """Delete up to ``chunk`` expired rows of each table; returns how many went."""
    now = now or datetime.now(UTC)
    removed = 0
    with db.transaction() as conn:
        old_replies = (
            select(processed_commands.c.key)
            .where(processed_commands.c.processed_at < now - KEEP_REPLIES)
            .limit(chunk)
        )
        removed += (
            conn.execute(
                delete(processed_commands).where(processed_commands.c.key.in_(old_replies))
            ).rowcount
            or 0
        )
        old_events = (
            select(outbox.c.id)
            .where(outbox.c.published_at.is_not(None), outbox.c.published_at < now - KEEP_PUBLISHED)
            .limit(chunk)
        )
        removed += conn.execute(delete(outbox).where(outbox.c.id.in_(old_events))).rowcount or 0
    return removed
