"""Idempotency records and published events are pruned only past their retention, and an
event a delivery record still due refers to never (the email is built from it)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from consumers.terminal import deliveries_table
from tests.integration.helpers import seed, submit
from workflow.app.outbox import relay_batch
from workflow.app.service import CommandService
from workflow.contract.names import NOTIFICATION_REQUESTED
from workflow.notifications import deliveries
from workflow.ops.retention import KEEP_REPLIES, prune
from workflow.persistence.tables import outbox, outbox_published, processed_commands

LEASE = timedelta(minutes=5)


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
    publish_all(service, clock)
    send_all(service, clock)  # with its notification.sent event
    assert prune(service.db, clock.now + timedelta(days=8)) == events + 1
    assert count(service, outbox) == 0


def publish_all(service: CommandService, clock) -> None:
    relay_batch(service.db, lambda batch: None)
    with service.db.engine.begin() as conn:
        conn.execute(update(outbox_published).values(at=clock.now))


def send_all(service: CommandService, clock) -> None:
    """The notifier's work, done: every due email claimed and recorded as sent."""
    claimed = deliveries.exchange(service.db, [], clock.now, want=100, lease=LEASE).claimed
    sent = [deliveries.Outcome(c, "sent", clock.now, message_id="<m@x>") for c in claimed]
    assert deliveries.exchange(service.db, sent, clock.now, want=0, lease=LEASE).recorded
    publish_all(service, clock)  # and the notification.sent events


def outbox_rows(service: CommandService) -> list[tuple[int, str]]:
    with service.db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(outbox.c.id, outbox.c.type).order_by("id"))]


def test_an_event_whose_delivery_is_still_due_stays_with_every_later_one(
    service: CommandService, clock
) -> None:
    seed(service)
    submit(service, message_id="first")
    publish_all(service, clock)
    written = outbox_rows(service)
    requested = next(i for i, type_ in written if type_ == NOTIFICATION_REQUESTED)
    later = clock.now + timedelta(days=8)

    # Pending, then claimed (sending): the event and every one after it stay.
    assert written[0][0] < requested  # the request.submitted before it goes
    prune(service.db, later)
    assert outbox_rows(service) == [(i, t) for i, t in written if i >= requested]
    claimed = deliveries.exchange(service.db, [], clock.now, want=100, lease=LEASE).claimed
    assert [c.notice.event_id for c in claimed]
    prune(service.db, later)
    assert outbox_rows(service) == [(i, t) for i, t in written if i >= requested]
    # A claim past its lease is taken over: the email is built from the event again.
    taken = deliveries.exchange(service.db, [], clock.now + LEASE, want=100, lease=LEASE).claimed
    assert [(c.notice.notification_id, c.notice.context) for c in taken] == [
        (c.notice.notification_id, c.notice.context) for c in claimed
    ]
    assert taken[0].notice.context

    # Sent: nothing is due, so the events go once published.
    sent = [deliveries.Outcome(c, "sent", clock.now, message_id="<m@x>") for c in taken]
    assert deliveries.exchange(service.db, sent, clock.now, want=0, lease=LEASE).recorded
    publish_all(service, clock)
    with service.db.store(lock=False) as store:
        (shown,) = deliveries.recent(store)
    prune(service.db, later)
    assert outbox_rows(service) == []

    # Its event pruned, the operators' list still says what became of the email.
    with service.db.store(lock=False) as store:
        (left,) = deliveries.recent(store)
    kept = ("notification_id", "template", "status", "attempts", "message_id", "sent_at")
    assert {k: left[k] for k in kept} == {k: shown[k] for k in kept}
    assert left["recipient"]["email"] == shown["recipient"]["email"]
    assert shown["subject"]
    assert shown["request_id"]
    assert (left["subject"], left["request_id"], left["recipient"]["name"]) == (None, None, None)
    line = deliveries_table([left]).splitlines()[1]
    assert f" {left['recipient']['email']} " in line
    assert "None" not in line
