"""R11 under concurrency: many submitters at once, exactly one pending request."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from policies.decision import ALLOW
from tests.integration.helpers import seed, send, submit
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


def race(service: CommandService) -> list[dict]:
    """SUBMITTERS threads, each with its own connection, submit at the same moment."""
    barrier = threading.Barrier(SUBMITTERS)
    replies: list[dict] = []

    def one(i: int) -> None:
        barrier.wait()
        replies.append(submit(service, actor="admin" if i % 2 else "admin-2"))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(SUBMITTERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return replies


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
    barrier = threading.Barrier(4)
    replies: list[dict] = []
    body = {
        "account_id": "acme",
        "actor_id": "acme-admin",
        "changes": [{"type": "add_seats", "product": "support", "quantity": 1}],
    }

    def one() -> None:
        barrier.wait()
        replies.append(send(service, "request.submit", body, "one-key"))

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == replies[0] for r in replies)
    assert replies[0]["ok"]
    assert pending_count(service) == 1
