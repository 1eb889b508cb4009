"""Figures about the workflow's state that operators watch (read on each scrape)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from workflow.persistence.database import Database


@dataclass(frozen=True)
class Snapshot:
    outbox_backlog: int
    outbox_oldest_age: float
    pending_requests: int
    pending_oldest_age: float


def _age(oldest: datetime | None, now: datetime) -> float:
    return 0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0)


def snapshot(db: Database, now: datetime | None = None) -> Snapshot:
    """Two indexed aggregate queries: the unpublished and the pending rows only."""
    now = now or datetime.now(UTC)
    with db.store(lock=False) as store:
        backlog, oldest_event = store.outbox.backlog()
        pending, oldest_request = store.queries.pending_backlog()
    return Snapshot(backlog, _age(oldest_event, now), pending, _age(oldest_request, now))
