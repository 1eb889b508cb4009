"""R11 under concurrency: many submitters at once, exactly one pending request; R23: deciders
approving at once, exactly one approval after exactly two approvals."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from policies.decision import ALLOW
from tests.integration.helpers import account, decide, events, member, seed, send, submit
from workflow.app.service import CommandService
from workflow.domain import lifecycle
from workflow.persistence.tables import requests

SUBMITTERS = 8


def pending_count(service: CommandService, account_id: str = "acme") -> int:
    with service.db.engine.connect() as conn:
        return conn.execute(
            select(func.count())
            .select_from(requests)
            .where(requests.c.account_id == account_id, requests.c.state == "pending")
        ).scalar_one()


def at_once(calls: list[Callable[[], dict]]) -> list[dict]:
    """Each call in its own thread (and so its own connection), released at the same moment;
    the replies in the order they came."""
    barrier = threading.Barrier(len(calls))
    replies: list[dict] = []

    def one(call: Callable[[], dict]) -> None:
        barrier.wait()
        replies.append(call())

    threads = [threading.Thread(target=one, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return replies


def race(service: CommandService) -> list[dict]:
    """SUBMITTERS threads submit at the same moment."""
    return at_once(
        [
            functools.partial(submit, service, actor="admin" if i % 2 else "admin-2")
            for i in range(SUBMITTERS)
        ]
    )


def test_r11_racing_submitters_leave_exactly_one_pending(service: CommandService) -> None:
    seed(service)
    replies = race(service)
    winners = [r for r in replies if r["ok"]]
    losers = [r["error"] for r in replies if not r["ok"]]
    assert len(winners) == 1
    assert {e["code"] for e in losers} == {"request_pending"}
    winner_id = winners[0]["result"]["request"]["request_id"]
    assert all(winner_id in e["message"] for e in losers)
    assert pending_count(service) == 1


def test_r11_unique_index_holds_when_the_policy_is_bypassed(
    service: CommandService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database, not only the policy, refuses a second pending request: with the
    policy blinded, the loser still gets request_pending, not a crash."""
    seed(service)
    first = submit(service)["result"]["request"]["request_id"]
    monkeypatch.setattr(lifecycle, "no_other_pending", lambda pending_request_id: ALLOW)
    refusal = submit(service, actor="admin-2")
    assert refusal["ok"] is False
    assert refusal["error"]["code"] == "request_pending"
    assert refusal["error"]["details"][0]["rule"] == "R11"
    assert first in refusal["error"]["message"]
    assert pending_count(service) == 1


def test_r11_duplicate_deliveries_racing_have_one_effect(service: CommandService) -> None:
    """Two workers handed the same message at once: one effect, same reply for both."""
    seed(service)
    body = {
        "account_id": "acme",
        "actor_id": "acme-admin",
        "changes": [{"type": "add_seats", "product": "support", "quantity": 1}],
    }
    replies = at_once([functools.partial(send, service, "request.submit", body, "one-key")] * 4)
    assert all(r == replies[0] for r in replies)
    assert replies[0]["ok"]
    assert pending_count(service) == 1


def _approve_at_once(service: CommandService, request_id: str, actors: list[str]) -> list[dict]:
    return at_once([functools.partial(decide, service, request_id, a) for a in actors])


def _two_person_request(service: CommandService) -> str:
    """A pending request of 575.00 USD a month on an account that wants two above 500.00,
    with a second billing admin besides the owner and the first one."""
    seed(service)
    upsert = {**account(), "approval": {"second_above": "500.00"}}
    assert send(service, "account.upsert", upsert)["ok"]
    assert send(service, "member.upsert", member("acme-billing-2", "billing_admin"))["ok"]
    return str(submit(service)["result"]["request"]["request_id"])


def test_r23_two_deciders_approving_at_once_approve_once_after_two_approvals(
    service: CommandService,
) -> None:
    request_id = _two_person_request(service)
    replies = _approve_at_once(service, request_id, ["owner", "billing"])
    assert all(r["ok"] for r in replies), replies
    assert sorted(r["result"]["request"]["state"] for r in replies) == ["approved", "pending"]
    [approved] = events(service.db, "request.approved")
    assert len(events(service.db, "request.approval_recorded")) == 1
    assert len(events(service.db, "subscription.changed")) == 1
    approvals = approved["data"]["request"]["approvals"]
    assert sorted(a["actor_id"] for a in approvals) == ["acme-billing", "acme-owner"]
    assert [h["to"] for h in approved["data"]["request"]["history"]] == [
        "pending",
        "pending",
        "approved",
    ]


def test_r23_three_deciders_at_once_two_approvals_count_the_third_is_too_late(
    service: CommandService,
) -> None:
    request_id = _two_person_request(service)
    replies = _approve_at_once(service, request_id, ["owner", "billing", "billing-2"])
    accepted = [r["result"]["request"]["state"] for r in replies if r["ok"]]
    refused = [r["error"]["code"] for r in replies if not r["ok"]]
    assert sorted(accepted) == ["approved", "pending"]
    assert refused == ["invalid_state"]
    [approved] = events(service.db, "request.approved")
    assert len(approved["data"]["request"]["approvals"]) == 2
    assert len(events(service.db, "request.approval_recorded")) == 1


def test_r23_the_same_decider_approving_twice_at_once_counts_once(
    service: CommandService,
) -> None:
    request_id = _two_person_request(service)
    replies = _approve_at_once(service, request_id, ["owner", "owner"])
    assert sorted(r["ok"] for r in replies) == [False, True]
    [refused] = [r["error"] for r in replies if not r["ok"]]
    assert (refused["code"], refused["details"][0]["rule"]) == ("forbidden", "R23")
    assert events(service.db, "request.approved") == []
    assert len(events(service.db, "request.approval_recorded")) == 1
