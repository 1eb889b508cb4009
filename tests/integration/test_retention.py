"""Idempotency records and published events are pruned only past their retention."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from tests.integration.helpers import seed, submit
from workflow.app.outbox import relay_batch
from workflow.app.service import CommandService
from workflow.ops.retention import KEEP_REPLIES, prune
from workflow.persistence.tables import outbox, outbox_published, processed_commands


def count(service: CommandService, table) -> int:
    with service.db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_prune_keeps_fresh_rows_and_unpublished_events(service: CommandService, clock) -> None:
    seed(service)
    submit(service, message_id="keep-me")
    replies, events = count(service, processed_commands), count(service, outbox)
    assert prune(service.db, clock.now + timedelta(days=1)) == 0
    assert count(service, processed_commands) == replies
    # Past the retention, replies go; events go only once published.
    assert prune(service.db, clock.now + KEEP_REPLIES + timedelta(seconds=1)) == replies
    assert count(service, outbox) == events
    relay_batch(service.db, lambda batch: None)
    with service.db.engine.begin() as conn:
        conn.execute(update(outbox_published).values(at=clock.now))
    assert prune(service.db, clock.now + timedelta(days=8)) == events
    assert count(service, outbox) == 0
