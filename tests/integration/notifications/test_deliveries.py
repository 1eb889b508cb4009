"""Delivery records on SQLite and PostgreSQL: one claim wins, a sent notification is never
claimed again, and ``notification.sent`` is emitted once (R18)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tests.integration.helpers import events, seed
from workflow.app.service import CommandService
from workflow.notifications import deliveries
from workflow.notifications.deliveries import BadNotice, ClaimStatus, parse_notice
from workflow.persistence.database import Database

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
STALE = timedelta(minutes=5)


def notice_body(notification_id: str = "n-1", **data: object) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"e-{notification_id}",
            "type": "notification.requested",
            "occurred_at": "2026-01-05T09:00:00Z",
            "account_id": "acme",
            "request_id": "r-1",
            "data": {
                "notification_id": notification_id,
                "template": "request_submitted",
                "locale": "en",
                "recipient": {"user_id": "o", "email": "o@acme.example", "name": "Olivia"},
                "subject": "s",
                "text": "t",
                **data,
            },
        }
    )


def test_first_claim_wins_and_a_sent_notification_is_never_claimed_again(
    database: Database,
) -> None:
    notice = parse_notice(notice_body())
    first = deliveries.claim(database, notice, NOW, STALE)
    assert (first.outcome, first.attempt) == (ClaimStatus.CLAIMED, 1)
    busy = deliveries.claim(database, notice, NOW + timedelta(seconds=1), STALE)
    assert busy.outcome is ClaimStatus.BUSY
    assert busy.busy_until == NOW + STALE
    assert first.token is not None
    assert deliveries.mark_sent(database, notice, first.token, NOW, "<n-1@x>")
    assert not deliveries.mark_sent(database, notice, first.token, NOW, "<n-1@x>")
    later = deliveries.claim(database, notice, NOW + STALE * 10, STALE)
    assert later.outcome is ClaimStatus.SENT
    sent = events(database, "notification.sent")
    assert [e["data"]["notification_id"] for e in sent] == ["n-1"]
    assert sent[0]["request_id"] == "r-1"
    assert sent[0]["data"]["recipient"] == {
        "user_id": "o",
        "email": "o@acme.example",
        "name": "Olivia",
    }


def test_a_retry_takes_the_released_claim_and_counts_attempts(database: Database) -> None:
    notice = parse_notice(notice_body())
    first = deliveries.claim(database, notice, NOW, STALE)
    assert first.token is not None
    deliveries.mark_retrying(database, notice, first.token, NOW, "451 try again later")
    again = deliveries.claim(database, notice, NOW + timedelta(seconds=1), STALE)
    assert (again.outcome, again.attempt) == (ClaimStatus.CLAIMED, 2)
    assert again.token is not None
    deliveries.mark_failed(database, notice, again.token, NOW, "550 no such user")
    assert deliveries.claim(database, notice, NOW, STALE).outcome is ClaimStatus.FAILED
    with database.store(lock=False) as store:
        [record] = deliveries.recent(store)
    assert (record["status"], record["attempts"]) == ("failed", 2)
    assert record["last_error"] == "550 no such user"


def test_a_stale_claim_is_taken_over_and_the_old_claimant_cannot_record(
    database: Database,
) -> None:
    notice = parse_notice(notice_body())
    crashed = deliveries.claim(database, notice, NOW, STALE)
    takeover = deliveries.claim(database, notice, NOW + STALE + timedelta(seconds=1), STALE)
    assert (takeover.outcome, takeover.attempt) == (ClaimStatus.CLAIMED, 2)
    assert crashed.token is not None
    assert takeover.token is not None
    assert not deliveries.mark_sent(database, notice, crashed.token, NOW, "<m>")
    assert deliveries.mark_sent(database, notice, takeover.token, NOW, "<m>")
    assert len(events(database, "notification.sent")) == 1


def test_the_claimant_may_take_its_own_claim_back(database: Database) -> None:
    """After recording an outcome failed (database down), the same notifier goes on."""
    notice = parse_notice(notice_body())
    mine = deliveries.claim(database, notice, NOW, STALE)
    again = deliveries.claim(database, notice, NOW, STALE, previous=mine.token)
    assert (again.outcome, again.attempt) == (ClaimStatus.CLAIMED, 2)


@pytest.mark.postgres
def test_concurrent_claims_have_one_winner(postgres_database: Database) -> None:
    from tests.conftest import _empty

    _empty(postgres_database)
    for n in range(10):
        notice = parse_notice(notice_body(f"race-{n}"))
        start = threading.Barrier(4)
        outcomes: list[ClaimStatus] = []

        def claim(
            notice: deliveries.Notice = notice,
            start: threading.Barrier = start,
            outcomes: list[ClaimStatus] = outcomes,
        ) -> None:
            start.wait()
            outcomes.append(deliveries.claim(postgres_database, notice, NOW, STALE).outcome)

        threads = [threading.Thread(target=claim) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert sorted(o.value for o in outcomes) == ["busy", "busy", "busy", "claimed"]


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1]", orjson.dumps({"data": {"notification_id": ""}}), b'{"data": 3}'],
)
def test_a_body_without_a_notification_id_is_refused(body: bytes) -> None:
    with pytest.raises(BadNotice):
        parse_notice(body)


@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)  # SQLite: one writer
def test_notification_sent_waits_for_a_transaction_holding_its_account(
    service: CommandService,
) -> None:
    """Events of a request keep their order: ``notification.sent`` takes the account lock,
    so its outbox id cannot come before those of a command still open on the account."""
    database = service.db
    seed(service)
    notice = parse_notice(notice_body())
    claimed = deliveries.claim(database, notice, NOW, STALE)
    assert claimed.token is not None
    token = claimed.token
    with database.store() as store:  # a command on acme, not yet committed
        store.account("acme", lock=True)
        store.add_event("request.approved", NOW, "acme", {}, "r-1")
        sender = threading.Thread(
            target=deliveries.mark_sent, args=(database, notice, token, NOW, "<m@x>")
        )
        sender.start()
        sender.join(0.5)
        assert sender.is_alive(), "notification.sent did not wait for the account lock"
    sender.join(10)
    order = [e["type"] for e in events(database) if e.get("request_id") == "r-1"]
    assert order == ["request.approved", "notification.sent"]
