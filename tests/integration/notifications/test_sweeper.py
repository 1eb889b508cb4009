"""The sweeper on SQLite and PostgreSQL (R14): a request past the TTL expires once, with its
event, history and the requester's notification; the deciders get one reminder."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from policies.timers import Timers
from tests.conftest import Clock
from tests.integration.helpers import account, decide, events, member, seed, send, submit
from workflow.app.service import CommandService
from workflow.domain.catalog import Catalog
from workflow.ops import reports
from workflow.ops.deadlines import Sweeper, SweepResult, sweep_interval
from workflow.persistence.database import Database
from workflow.settings import describe

CREATED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
"""When ``submit`` makes a request: the test clock's start."""
TTL = timedelta(days=30)
REMIND = timedelta(days=3)


def sweeper(service: CommandService, clock: Clock, batch: int = 200, **timers: Any) -> Sweeper:
    return Sweeper(
        service.db,
        service.catalog,
        timers=Timers(**{"ttl": TTL, "reminder_after": REMIND, **timers}),
        notify_billing_admins=service.notify_billing_admins,
        clock=clock,
        batch=batch,
    )


def sweep_together(sweepers: list[Sweeper]) -> list[SweepResult]:
    """One pass of every sweeper, each in its own thread, all starting at once: what each
    pass did. A pass that failed fails the test."""
    start = threading.Barrier(len(sweepers))
    results: list[SweepResult] = []
    failures: list[BaseException] = []

    def run(sweep: Sweeper) -> None:
        try:
            start.wait()
            results.append(sweep.sweep())
        except BaseException as exc:  # raised below, in the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in sweepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if failures:
        raise failures[0]
    assert len(results) == len(sweepers), "a sweeper did not finish its pass"
    return results


def stored(db: Database, request_id: str) -> dict[str, Any]:
    with db.store(lock=False) as store:
        row = store.request(request_id)
        assert row is not None
        return dict(row)


def recipients(db: Database, template: str) -> list[str]:
    return sorted(n["recipient"]["user_id"] for n in notices(db, template))  # type: ignore[index]


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


def test_an_escalated_decider_is_reminded_and_told_of_a_withdrawal(
    service: CommandService, clock: Clock
) -> None:
    """R17, R20, R22: a decider the escalation emailed counts as told from then on."""
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    sweep = sweeper(service, clock, escalate_after=timedelta(days=2))
    clock.advance(days=2, seconds=1)
    assert sweep.sweep().escalated == [request_id]
    clock.advance(days=1)
    assert sweep.sweep().reminded == [request_id]
    assert recipients(service.db, "request_reminder") == ["acme-billing", "acme-owner"]
    send(service, "request.cancel", {"request_id": request_id, "actor_id": "acme-admin"})
    assert recipients(service.db, "request_withdrawn") == ["acme-billing", "acme-owner"]


def test_r20_r23_after_the_first_of_two_approvals_only_the_other_deciders_are_reminded(
    service: CommandService, clock: Clock
) -> None:
    """The owner approved a request that needs two (R23): the reminders ask the billing
    admin, who was told of the first approval, not the owner, who has decided."""
    seed(service)
    assert send(service, "account.upsert", {**account(), "approval": {"second_above": "500.00"}})[
        "ok"
    ]
    request_id = submit(service)["result"]["request"]["request_id"]
    first = decide(service, request_id, "owner")
    assert first["ok"], first
    assert first["result"]["request"]["state"] == "pending"
    sweep = sweeper(service, clock, reminder_every=timedelta(days=2), reminders_max=2)
    clock.advance(days=3, seconds=1)
    assert sweep.sweep().reminded == [request_id]
    assert recipients(service.db, "request_reminder") == ["acme-billing"]
    assert decide(service, request_id, "billing")["result"]["request"]["state"] == "approved"
    clock.advance(days=3)
    assert sweep.sweep().reminded == []  # decided: no second reminder


def test_r14_reminders_go_to_the_deciders_emailed_on_submit_only(
    service: CommandService, clock: Clock
) -> None:
    """A billing admin who was not emailed on submit is not reminded (R22 would reach them);
    one who was emailed and left the account is not reminded either."""
    seed(service)
    send(service, "member.upsert", member("acme-billing-2", "billing_admin"))
    service.notify_billing_admins = True
    request_id = submit(service)["result"]["request"]["request_id"]
    assert recipients(service.db, "request_submitted") == [
        "acme-billing",
        "acme-billing-2",
        "acme-owner",
    ]
    send(service, "member.remove", {"account_id": "acme", "user_id": "acme-billing-2"})
    send(service, "member.upsert", member("acme-billing-3", "billing_admin"))
    clock.advance(days=3, seconds=1)
    assert sweeper(service, clock).sweep().reminded == [request_id]
    assert recipients(service.db, "request_reminder") == ["acme-billing", "acme-owner"]


def test_r20_reminders_repeat_every_interval_up_to_the_max(
    service: CommandService, clock: Clock
) -> None:
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    sweep = sweeper(service, clock, reminder_every=timedelta(days=2), reminders_max=3)

    def reminded_at(**since_submit: float) -> bool:
        clock.now = CREATED + timedelta(**since_submit)
        fired = sweep.sweep().reminded
        assert sweep.sweep().reminded == []  # a second pass at the same time sends nothing
        return fired == [request_id]

    assert not reminded_at(days=3)  # R14: once three days have passed
    assert reminded_at(days=3, seconds=1)
    assert not reminded_at(days=5, seconds=1)  # R20: two days after the one before
    assert reminded_at(days=5, seconds=2)
    assert not reminded_at(days=6)
    assert reminded_at(days=7, seconds=3)
    assert not reminded_at(days=12)  # three in all
    assert recipients(service.db, "request_reminder") == ["acme-owner"] * 3
    assert stored(service.db, request_id)["reminders"] == 3


def test_r20_a_sweeper_that_was_away_sends_one_overdue_reminder(
    service: CommandService, clock: Clock
) -> None:
    """The repeats count from the reminder sent, not from the ones missed meanwhile."""
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    sweep = sweeper(service, clock, reminder_every=timedelta(days=1), reminders_max=5)
    clock.advance(days=10)
    assert sweep.sweep().reminded == [request_id]
    assert sweep.sweep().reminded == []
    clock.advance(hours=23)
    assert sweep.sweep().reminded == []
    clock.advance(hours=1, seconds=1)
    assert sweep.sweep().reminded == [request_id]
    assert len(notices(service.db, "request_reminder")) == 2


def test_r21_the_requester_and_the_emailed_deciders_are_warned_once_of_the_expiry(
    service: CommandService, clock: Clock
) -> None:
    seed(service)
    send(service, "member.upsert", member("acme-admin", "admin", locale="it"))
    request_id = submit(service, note="agents start Monday")["result"]["request"]["request_id"]
    sweep = sweeper(service, clock, expiry_warning=timedelta(days=1))
    clock.advance(days=28, hours=23)
    assert sweep.sweep().warned == []
    clock.advance(hours=1, seconds=1)
    assert sweep.sweep().warned == [request_id]
    assert sweep.sweep().warned == []
    warnings = {n["recipient"]["user_id"]: n for n in notices(service.db, "request_expiry_warning")}  # type: ignore[index]
    assert sorted(warnings) == ["acme-admin", "acme-owner"]
    owner, admin = warnings["acme-owner"], warnings["acme-admin"]
    assert (owner["locale"], admin["locale"]) == ("en", "it")
    assert "expires on 4 February 2026 at 09:00 UTC" in str(owner["subject"])
    assert "agents start Monday" in str(owner["text"])
    assert "scade il 4 febbraio 2026 alle 09:00 UTC" in str(admin["subject"])
    assert str(admin["subject"]).startswith("La tua modifica")
    clock.advance(days=1)
    result = sweep.sweep()
    assert (result.expired, result.warned) == ([request_id], [])
    assert len(notices(service.db, "request_expiry_warning")) == 2


def test_r21_a_request_submitted_inside_the_warning_is_warned_at_once(
    service: CommandService, clock: Clock
) -> None:
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    sweep = sweeper(service, clock, expiry_warning=TTL * 2)  # settings refuse it; still safe
    clock.advance(seconds=1)
    assert sweep.sweep().warned == [request_id]
    assert sweep.sweep().warned == []


def test_r22_escalation_reaches_every_decider_not_yet_emailed_once(
    service: CommandService, clock: Clock
) -> None:
    seed(service)
    send(service, "member.upsert", member("acme-billing-2", "billing_admin", locale="it-IT"))
    request_id = submit(service)["result"]["request"]["request_id"]
    sweep = sweeper(service, clock, escalate_after=timedelta(days=5))
    clock.advance(days=4, hours=23)
    assert sweep.sweep().escalated == []
    clock.advance(hours=1, seconds=1)
    assert sweep.sweep().escalated == [request_id]
    clock.advance(days=1)
    assert sweep.sweep().escalated == []
    escalated = {n["recipient"]["user_id"]: n for n in notices(service.db, "request_escalated")}  # type: ignore[index]
    assert sorted(escalated) == ["acme-billing", "acme-billing-2"]
    assert escalated["acme-billing-2"]["locale"] == "it"
    assert str(escalated["acme-billing"]["subject"]).startswith("Now with you too: ")
    assert "nobody has decided in 5 days" in " ".join(
        str(escalated["acme-billing"]["text"]).split()
    )
    assert stored(service.db, request_id)["notified"] == [
        "acme-owner",
        "acme-billing",
        "acme-billing-2",
    ]


def test_r22_with_every_decider_emailed_the_escalation_sends_nothing(
    service: CommandService, clock: Clock
) -> None:
    seed(service)
    service.notify_billing_admins = True
    request_id = submit(service)["result"]["request"]["request_id"]
    sweep = sweeper(service, clock, escalate_after=timedelta(days=1))
    clock.advance(days=2)
    assert sweep.sweep().escalated == [request_id]
    assert sweep.sweep().escalated == []
    assert notices(service.db, "request_escalated") == []
    assert stored(service.db, request_id)["escalated_at"] is not None


def test_the_new_emails_are_in_the_requests_notifications(
    service: CommandService, clock: Clock
) -> None:
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    sweep = sweeper(
        service,
        clock,
        reminder_every=timedelta(days=10),
        reminders_max=2,
        expiry_warning=timedelta(days=2),
        escalate_after=timedelta(days=4),
    )
    for day in range(1, 30):
        clock.now = CREATED + timedelta(days=day, seconds=1)
        sweep.sweep()
    with reports.reading(service.db) as store:  # subreq requests show
        shown = reports.request_notifications(store, request_id)
        listed = reports.deliveries(store, "pending")  # subreq notifications list
    told = [(n["template"], n["recipient"]["user_id"]) for n in shown]
    assert all(n["delivery"]["status"] == "pending" for n in shown)
    assert sorted(d["template"] for d in listed) == sorted(template for template, _ in told)
    assert told == [
        ("request_submitted", "acme-owner"),
        ("request_reminder", "acme-owner"),  # day 3
        ("request_escalated", "acme-billing"),  # day 4
        ("request_reminder", "acme-billing"),  # day 14: ten days after the first passed
        ("request_reminder", "acme-owner"),
        ("request_expiry_warning", "acme-admin"),  # day 28: the requester, then the deciders
        ("request_expiry_warning", "acme-billing"),
        ("request_expiry_warning", "acme-owner"),
    ]


def test_decided_and_expired_requests_get_no_timer(service: CommandService, clock: Clock) -> None:
    seed(service)
    seed(service, "beta")
    decided = submit(service)["result"]["request"]["request_id"]
    assert decide(service, decided, "owner")["ok"]
    submit(service, "beta")
    sweep = sweeper(
        service,
        clock,
        reminder_every=timedelta(days=1),
        reminders_max=9,
        expiry_warning=timedelta(days=1),
        escalate_after=timedelta(days=1),
    )
    clock.advance(days=31)
    result = sweep.sweep()
    assert len(result.expired) == 1
    assert (result.reminded, result.warned, result.escalated) == ([], [], [])
    assert not sweep.sweep()


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
    sweepers = [sweeper(service, clock, batch=5) for _ in range(3)]
    clock.advance(days=4)
    results = sweep_together(sweepers)
    assert sum(len(r.reminded) for r in results) == 20
    assert len(notices(postgres_database, "request_reminder")) == 20
    clock.advance(days=30)
    results = sweep_together(sweepers)
    assert sum(len(r.expired) for r in results) == 20
    assert sum(len(r.reminded) for r in results) == 0
    assert len(events(postgres_database, "request.expired")) == 20
    assert len(notices(postgres_database, "request_expired")) == 20


@pytest.mark.postgres
def test_concurrent_sweepers_fire_each_timer_once_per_request(
    postgres_database: Database, catalog: Catalog, clock: Clock
) -> None:
    """R18, R20-R22: three sweepers passing at the same moments, again and again: every
    reminder, warning and escalation goes once to each of its recipients."""
    from tests.conftest import _empty

    _empty(postgres_database)
    service = CommandService(postgres_database, catalog, clock=clock)
    accounts = [f"acct{n}" for n in range(12)]
    for account_id in accounts:
        seed(service, account_id)
        assert submit(service, account_id)["ok"]
    timers = {
        "reminder_every": timedelta(days=2),
        "reminders_max": 3,
        "expiry_warning": timedelta(days=3),
        "escalate_after": timedelta(days=4),
    }
    sweepers = [sweeper(service, clock, batch=5, **timers) for _ in range(3)]
    for hours in range(12, 31 * 24, 12):
        clock.now = CREATED + timedelta(hours=hours, seconds=1)
        sweep_together(sweepers)
    told = Counter(
        (n["template"], n["recipient"]["user_id"])  # type: ignore[index]
        for n in notices(postgres_database, "request_reminder")
        + notices(postgres_database, "request_expiry_warning")
        + notices(postgres_database, "request_escalated")
    )
    expected: Counter[tuple[str, str]] = Counter()
    for a in accounts:
        # reminders on days 3, 5 and 7 (before the escalation on day 4: the owner alone)
        expected[("request_reminder", f"{a}-owner")] = 3
        expected[("request_reminder", f"{a}-billing")] = 2
        expected[("request_escalated", f"{a}-billing")] = 1
        for user in ("admin", "owner", "billing"):
            expected[("request_expiry_warning", f"{a}-{user}")] = 1
    assert told == expected
    assert len(events(postgres_database, "request.expired")) == len(accounts)


def test_the_interval_is_a_quarter_of_the_shorter_duration_within_bounds() -> None:
    assert sweep_interval(timedelta(seconds=4), timedelta(seconds=2)) == 0.5
    assert sweep_interval(timedelta(days=30), timedelta(days=3)) == 60.0
    assert sweep_interval(timedelta(milliseconds=100), timedelta(days=3)) == 0.2
    assert describe(timedelta(days=30)) == "30d"
    assert describe(timedelta(days=3, hours=4, minutes=5)) == "3d 4h"
    assert describe(timedelta(seconds=2)) == "2s"
