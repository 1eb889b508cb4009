"""Delivery records on SQLite and PostgreSQL: written with the command, claimed by one
notifier at a time, recorded only while the claim holds, and ``notification.sent`` emitted
once (R18)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.helpers import events, seed
from tests.integration.notifications.support import request_email
from workflow.app.service import CommandService
from workflow.notifications import deliveries
from workflow.notifications.deliveries import Claimed, Outcome
from workflow.persistence.database import Database

LEASE = timedelta(minutes=5)


def now() -> datetime:
    return datetime.now(UTC)


def claim(db: Database, at: datetime, want: int = 10) -> list[Claimed]:
    return deliveries.exchange(db, [], at, want=want, lease=LEASE).claimed


def record(db: Database, outcome: Outcome) -> deliveries.Exchange:
    return deliveries.exchange(db, [outcome], outcome.at, want=0, lease=LEASE)


def test_a_record_is_claimed_once_and_a_sent_one_never_again(database: Database) -> None:
    request_email(database, "n-1", "o@acme.example")
    at = now()
    [first] = claim(database, at)
    assert (first.notice.notification_id, first.attempt) == ("n-1", 1)
    assert first.notice.context is not None  # what the templates render, kept with it
    assert claim(database, at + timedelta(seconds=1)) == []  # held: nobody else takes it
    done = record(database, Outcome(first, "sent", at, message_id="<n-1@x>"))
    assert [o.claimed.notice.notification_id for o in done.recorded] == ["n-1"]
    assert not record(database, Outcome(first, "sent", at, message_id="<n-1@x>")).recorded
    assert claim(database, at + LEASE * 10) == []
    [sent] = events(database, "notification.sent")
    assert sent["data"]["notification_id"] == "n-1"
    assert sent["data"]["message_id"] == "<n-1@x>"
    assert sent["data"]["recipient"] == {
        "user_id": "u",
        "email": "o@acme.example",
        "name": "Olivia Owner",
    }


def test_a_retry_waits_until_due_and_a_failure_waits_for_its_dead_letter(
    database: Database,
) -> None:
    request_email(database, "n-1", "o@acme.example")
    at = now()
    [first] = claim(database, at)
    due = at + timedelta(seconds=30)
    record(database, Outcome(first, "retrying", at, error="451 try again later", due_at=due))
    assert claim(database, due - timedelta(seconds=1)) == []
    [again] = claim(database, due)
    assert again.attempt == 2
    record(database, Outcome(again, "failed", due, error="550 no such user"))
    assert claim(database, due + LEASE * 10) == []
    [(notice, body, reason)] = deliveries.unreported_failures(database)
    assert (notice.notification_id, reason) == ("n-1", "550 no such user")
    assert b'"notification_id":"n-1"' in body
    deliveries.mark_reported(database, ["n-1"])
    assert deliveries.unreported_failures(database) == []
    with database.store(lock=False) as store:
        [row] = deliveries.recent(store)
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 2, "550 no such user")
    assert events(database, "notification.sent") == []


def test_a_claim_whose_lease_ended_is_taken_over_and_the_old_claimant_records_nothing(
    database: Database,
) -> None:
    request_email(database, "n-1", "o@acme.example")
    at = now()
    [crashed] = claim(database, at)
    [takeover] = claim(database, at + LEASE + timedelta(seconds=1))
    assert takeover.attempt == 2
    lost = record(database, Outcome(crashed, "sent", at, message_id="<m>"))
    assert (lost.recorded, len(lost.lost)) == ([], 1)
    assert record(database, Outcome(takeover, "sent", at, message_id="<m>")).recorded
    assert len(events(database, "notification.sent")) == 1


def test_a_renewed_claim_holds_past_its_first_lease_and_only_while_still_held(
    database: Database,
) -> None:
    request_email(database, "n-1", "o@acme.example")
    at = now()
    [held] = claim(database, at)
    renewing = [(held.notice.notification_id, held.token)]
    renewed = deliveries.exchange(database, [], at + LEASE / 2, want=0, lease=LEASE, renew=renewing)
    assert (renewed.renewed, renewed.lease_until) == ({"n-1"}, at + LEASE * 3 / 2)
    assert claim(database, at + LEASE + timedelta(seconds=1)) == []  # renewed: still held
    [takeover] = claim(database, at + LEASE * 3 / 2)
    assert takeover.attempt == 2
    # The old claimant renews nothing (another token holds it), and records nothing.
    late = deliveries.exchange(database, [], at + LEASE * 2, want=0, lease=LEASE, renew=renewing)
    assert late.renewed == set()
    assert not record(database, Outcome(held, "sent", at, message_id="<m>")).recorded


def test_a_mail_recorded_sent_and_never_announced_is_announced_once_by_another(
    database: Database,
) -> None:
    """The notifier died between the commit recording the mail sent (right after the 250)
    and the one writing its ``notification.sent``: another writes it, once."""
    request_email(database, "n-1", "o@acme.example")
    at = now()
    [held] = claim(database, at)
    sent = Outcome(held, "sent", at, message_id="<n-1@x>")
    done = deliveries.exchange(database, [sent], at, want=0, lease=LEASE, announce_sent=False)
    assert [o.claimed.notice.notification_id for o in done.recorded] == ["n-1"]
    assert events(database, "notification.sent") == []
    assert claim(database, at + LEASE * 10) == []  # sent: never claimed again
    assert deliveries.announce_stranded(database, at - timedelta(seconds=1)) == 0  # too new
    assert deliveries.announce_stranded(database, at + LEASE) == 1
    assert deliveries.announce_stranded(database, at + LEASE) == 0
    assert deliveries.announce(database, [sent]) == set()  # the late owner writes nothing
    [event] = events(database, "notification.sent")
    assert (event["data"]["notification_id"], event["data"]["message_id"]) == ("n-1", "<n-1@x>")


@pytest.mark.postgres
def test_concurrent_claims_never_share_a_record(postgres_database: Database) -> None:
    from tests.conftest import _empty

    _empty(postgres_database)
    ids = [f"race-{n}" for n in range(60)]
    for notification_id in ids:
        request_email(postgres_database, notification_id, "o@acme.example")
    start = threading.Barrier(4)
    taken: list[list[str]] = [[] for _ in range(4)]

    def claimer(mine: list[str]) -> None:
        start.wait()
        while batch := claim(postgres_database, now(), want=5):
            mine.extend(c.notice.notification_id for c in batch)

    threads = [threading.Thread(target=claimer, args=(t,)) for t in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    everything = [i for mine in taken for i in mine]
    assert sorted(everything) == sorted(ids)  # each once, none left


@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)  # SQLite: one writer
def test_notification_sent_waits_for_a_transaction_holding_its_account(
    service: CommandService,
) -> None:
    """Events of a request keep their order: ``notification.sent`` takes the account lock,
    so its outbox id cannot come before those of a command still open on the account."""
    database = service.db
    seed(service)
    request_email(database, "n-1", "o@acme.example")
    at = now()
    [claimed] = claim(database, at)
    sent = Outcome(claimed, "sent", at, message_id="<m@x>")
    with database.store() as store:  # a command on acme, not yet committed
        store.account("acme", lock=True)
        store.add_event("request.approved", at, "acme", {}, None)
        recorder = threading.Thread(target=record, args=(database, sent))
        recorder.start()
        recorder.join(0.5)
        assert recorder.is_alive(), "notification.sent did not wait for the account lock"
    recorder.join(10)
    order = [e["type"] for e in events(database) if e["account_id"] == "acme"]
    assert order[-2:] == ["request.approved", "notification.sent"]
