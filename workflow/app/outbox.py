"""Claiming committed outbox rows for publication, and marking them published.

The broker is not known here: the relay passes a ``publish`` callable that
returns only once the broker confirmed every event. The batch is marked published (one
row: "up to this id") in the same transaction that claimed it, so a crash before the
confirm leaves it unpublished (published again later: consumers dedupe on ``event_id``).
That transaction does not wait for its commit to reach the disk: losing the mark in a
crash of the database server means publishing the batch again, which is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from workflow.persistence.database import Database
from workflow.persistence.outbox import PendingEvent

__all__ = ["PendingEvent", "backlog", "relay_batch"]


def relay_batch(
    db: Database, publish: Callable[[Sequence[PendingEvent]], None], limit: int = 500
) -> int:
    """Publish up to ``limit`` unpublished events in order; returns how many. Only one
    relay per database works at a time, which keeps each request's events in order."""
    with db.store() as store:
        if not store.outbox.claim_relay():
            return 0
        events = store.outbox.unpublished(limit)
        if not events:
            return 0
        publish(events)
        store.outbox.mark_published(events[-1].id, datetime.now(UTC))
        store.outbox.lazy_commit()
        return len(events)


def backlog(db: Database) -> tuple[int, datetime | None]:
    """How many events wait, and since when the oldest does."""
    with db.store(lock=False) as store:
        return store.outbox.backlog()
