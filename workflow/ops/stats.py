"""Figures about the workflow's state that operators watch (read on each scrape)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select

from workflow.persistence.database import Database
from workflow.persistence.tables import outbox, requests


@dataclass(frozen=True)
class Snapshot:
    outbox_backlog: int
    outbox_oldest_age: float
    pending_requests: int
    pending_oldest_age: float


def _age(oldest: datetime | None, now: datetime) -> float:
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return max((now - oldest).total_seconds(), 0.0)


def snapshot(db: Database, now: datetime | None = None) -> Snapshot:
    """Two indexed aggregate queries: the unpublished and the pending rows only."""
    now = now or datetime.now(UTC)
    with db.engine.connect() as conn:
        backlog, oldest_event = conn.execute(
            select(func.count(), func.min(outbox.c.created_at)).where(
                outbox.c.published_at.is_(None)
            )
        ).one()
        pending, oldest_request = conn.execute(
            select(func.count(), func.min(requests.c.created_at)).where(
                requests.c.state == "pending"
            )
        ).one()
    return Snapshot(backlog, _age(oldest_event, now), pending, _age(oldest_request, now))
