"""Bounded clean-up of rows whose job is done, so tables stop growing with traffic.

Idempotency records are kept at least as long as the contract promises (7 days);
published events as long as operators may want to inspect or replay them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workflow.persistence.database import Database

KEEP_REPLIES = timedelta(days=7)
KEEP_PUBLISHED = timedelta(days=7)
KEEP_LINKS = timedelta(days=30)
"""Console links past their end are kept a while, so a late visit still shows the outcome."""
CHUNK = 5000


def prune(db: Database, now: datetime | None = None, chunk: int = CHUNK) -> int:
    """Delete up to ``chunk`` expired rows of each table; returns how many went."""
    now = now or datetime.now(UTC)
    with db.store(lock=False) as store:
        removed = store.queries.prune_replies(now - KEEP_REPLIES, chunk)
        removed += store.links.prune(now - KEEP_LINKS, chunk)
        return removed + store.outbox.prune_published(now - KEEP_PUBLISHED, chunk)
