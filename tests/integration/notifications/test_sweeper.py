"""The sweeper on SQLite and PostgreSQL (R14): a request past the TTL expires once, with its
event, history and the requester's notification; the deciders get one reminder."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from tests.conftest import Clock
from tests.integration.helpers import decide, events, seed, send, submit
from workflow.app.service import CommandService
from workflow.domain.catalog import Catalog
from workflow.ops.deadlines import Sweeper, describe, sweep_interval
from workflow.persistence.database import Database

TTL = timedelta(days=30)
REMIND = timedelta(days=3)


def sweeper(service: CommandService, clock: Clock, batch: int = 200) -> Sweeper:
    return Sweeper(
        service.db, service.catalog, ttl=TTL, reminder_after=REMIND, clock=clock, batch=batch
    )


def notices(db: Database, template: str) -> list[dict[str, object]]:
    return [
        n["data"] for n in events(db, "notification.requested") if n["data"]["template"] == template
    ]


def test_deciders_are_reminded_once_and_the_request_expires_once(
    service: CommandService, clock: Clock
) -> None:
    seed(service)
    request_id = submit(service, note="agents start Monday")["result"]["request"]["request_id"]
    sweep = sweeper(service, clock)
    clock.advance(days=2)
    assert sweep.sweep().reminded == []
    clock.advance(days=1, seconds=1)
    assert sweep.sweep().reminded == [request_id]
    assert sweep.sweep().reminded == []
    [reminder] = notices(service.db, "request_reminder")
    assert reminder["recipient"]["user_id"] == "acme-owner"  # type: ignore[index]
    assert "3 days" in str(reminder["text"])
    assert "agents start Monday" in str(reminder["text"])
    assert "4 February 2026" in str(reminder["text"])  # when it will expire

    clock.advance(days=27)
    result = sweep.sweep()
    assert (result.expired, result.reminded) == ([request_id], [])
    assert sweep.sweep().expired == []
    got = send(service, "request.get", {"request_id": request_id, "actor_id": "acme-admin"})
    request = got["result"]["request"]
    assert request["state"] == "expired"
    assert request["history"][-1]["trigger"] == "expire"
    assert request["history"][-1]["reason"] == "nobody decided within 30d"
    assert len(events(service.db, "request.expired")) == 1
    [expired] = notices(service.db, "request_expired")
    assert expired["recipient"]["user_id"] == "acme-admin"  # type: ignore[index]
    assert "30 days" in str(expired["text"])


def test_a_request_past_both_deadlines_expires_without_a_reminder(
    service: CommandService, clock: Clock
) -> None:
    seed(service)
    submit(service)
    clock.advance(days=31)
    result = sweeper(service, clock).sweep()
    assert len(result.expired) == 1
    assert result.reminded == []
    assert notices(service.db, "request_reminder") == []


def test_decided_requests_are_left_alone(service: CommandService, clock: Clock) -> None:
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    assert decide(service, request_id, "owner")["ok"]
    clock.advance(days=40)
    result = sweeper(service, clock).sweep()
    assert (result.expired, result.reminded) == ([], [])


def test_a_reminded_decider_is_told_of_a_withdrawal(service: CommandService, clock: Clock) -> None:
    """R17: the deciders who were emailed about the request include the reminded ones."""
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    service.notify_billing_admins = True
    sweep = sweeper(service, clock)
    sweep.notify_billing_admins = True
    clock.advance(days=4)
    assert sweep.sweep().reminded == [request_id]
    send(service, "request.cancel", {"request_id": request_id, "actor_id": "acme-admin"})
    told = {n["recipient"]["user_id"] for n in notices(service.db, "request_withdrawn")}  # type: ignore[index]
    assert told == {"acme-owner", "acme-billing"}


def test_batches_cover_a_backlog_larger_than_one_batch(
    service: CommandService, clock: Clock
) -> None:
    for n in range(7):
        seed(service, f"acct{n}")
        assert submit(service, f"acct{n}")["ok"]
    clock.advance(days=4)
    assert len(sweeper(service, clock, batch=3).sweep().reminded) == 7
    clock.advance(days=30)
    assert len(sweeper(service, clock, batch=3).sweep().expired) == 7


@pytest.mark.postgres
def test_concurrent_sweepers_expire_and_remind_each_request_once(
    postgres_database: Database, catalog: Catalog, clock: Clock
) -> None:
    from tests.conftest import _empty

    _empty(postgres_database)
    service = CommandService(postgres_database, catalog, clock=clock)
    for n in range(20):
        seed(service, f"acct{n}")
        assert submit(service, f"acct{n}")["ok"]
    start = threading.Barrier(3)
    results: list[tuple[int, int]] = []

    def run() -> None:
        sweep = sweeper(service, clock, batch=5)
        start.wait()
        reminded = len(sweep.remind_due())
        results.append((0, reminded))
        expired = len(sweep.expire_due())
        results.append((expired, 0))

    clock.advance(days=4)
    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(r for _, r in results) == 20
    assert len(notices(postgres_database, "request_reminder")) == 20
    clock.advance(days=30)
    results.clear()
    start = threading.Barrier(3)
    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(e for e, _ in results) == 20
    assert len(events(postgres_database, "request.expired")) == 20
    assert len(notices(postgres_database, "request_expired")) == 20


def test_the_interval_is_a_quarter_of_the_shorter_duration_within_bounds() -> None:
    assert sweep_interval(timedelta(seconds=4), timedelta(seconds=2)) == 0.5
    assert sweep_interval(timedelta(days=30), timedelta(days=3)) == 60.0
    assert sweep_interval(timedelta(milliseconds=100), timedelta(days=3)) == 0.2
    assert describe(timedelta(days=30)) == "30d"
    assert describe(timedelta(days=3, hours=4, minutes=5)) == "3d 4h"
    assert describe(timedelta(seconds=2)) == "2s"
