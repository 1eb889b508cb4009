"""Two-person approval (R23) end to end through CommandService, on SQLite and PostgreSQL:
the threshold on account.upsert, the first approval that stays pending, the second that
applies the change, and what lowering or removing the threshold does (nothing by itself)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.integration.helpers import account, counts, decide, events, seed, send, submit
from workflow.app.service import CommandService

ABOVE_575 = {"second_above": "500.00"}
"""The test request (5 support seats) costs 575.00 USD a month: above this, it needs two."""


def with_threshold(service: CommandService, approval: Any, **kwargs: Any) -> dict[str, Any]:
    return send(service, "account.upsert", {**account(**kwargs), "approval": approval})


def two_person(service: CommandService) -> str:
    """The seeded account with a threshold below the test request, and its pending request."""
    seed(service)
    assert with_threshold(service, ABOVE_575)["ok"]
    reply = submit(service)
    assert reply["ok"], reply
    return str(reply["result"]["request"]["request_id"])


def error(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["ok"] is False, reply
    return dict(reply["error"])


def test_upsert_stores_shows_and_removes_the_threshold(service: CommandService) -> None:
    seed(service)
    reply = with_threshold(service, {"second_above": "1000"})
    assert reply["result"]["approval"] == {"second_above": "1000.00", "currency": "USD"}
    # An upsert that does not mention it keeps it; null removes it.
    assert send(service, "account.upsert", account())["result"]["approval"] == {
        "second_above": "1000.00",
        "currency": "USD",
    }
    assert with_threshold(service, None)["result"]["approval"] is None
    assert send(service, "account.upsert", account())["result"]["approval"] is None


def test_upsert_without_subscription_takes_the_currency_on_record(
    service: CommandService,
) -> None:
    seed(service, currency="EUR")
    body = {**account(currency="EUR"), "approval": {"second_above": "10.5"}}
    del body["subscription"]
    reply = send(service, "account.upsert", body)
    assert reply["result"]["approval"] == {"second_above": "10.50", "currency": "EUR"}


@pytest.mark.parametrize(
    ("approval", "field", "words"),
    [
        ({"second_above": "-1.00"}, "approval.second_above", "must not be negative"),
        ({"second_above": "a lot"}, "approval.second_above", "decimal string"),
        ({"second_above": 1000}, "approval.second_above", "decimal string"),
        ({"second_above": "1000 EUR"}, "approval.second_above", "account's currency"),
        ({"second_above": "1.001"}, "approval.second_above", "two decimals"),
        ({"second_above": "1000.00", "currency": "EUR"}, "approval.currency", "billed in USD"),
        ({}, "approval.second_above", "required"),
    ],
)
def test_a_bad_threshold_is_an_invalid_message_naming_the_field(
    service: CommandService, approval: dict[str, Any], field: str, words: str
) -> None:
    seed(service)
    before = counts(service.db)
    outcome = service.handle(
        "account.upsert",
        orjson.dumps({**account(), "approval": approval}),
        "bad-threshold",
    )
    assert outcome.invalid  # a schema violation: answered, audited, dead-lettered
    problem = error(outcome.json())
    assert problem["code"] == "invalid_message"
    [detail] = problem["details"]
    assert detail["field"] == field
    assert words in detail["reason"]
    after = counts(service.db)
    assert after.pop("audit_log") == before.pop("audit_log") + 1
    assert after == before


def test_r5_a_threshold_on_a_self_service_account_changes_no_eligibility(
    service: CommandService,
) -> None:
    seed(service, type_="self_service")
    reply = with_threshold(service, ABOVE_575, type_="self_service")
    assert reply["result"]["approval"]["second_above"] == "500.00"
    refused = error(submit(service))
    assert refused["code"] == "not_eligible"
    assert [d["rule"] for d in refused["details"]] == ["R5"]


def test_r23_below_the_threshold_one_approval_applies_the_change(
    service: CommandService,
) -> None:
    seed(service)
    assert with_threshold(service, {"second_above": "575.00"})["ok"]  # equal is not above
    request_id = submit(service)["result"]["request"]["request_id"]
    reply = decide(service, request_id, "owner", comment="fine")
    request = reply["result"]["request"]
    assert request["state"] == "approved"
    assert [(a["actor_id"], a["comment"]) for a in request["approvals"]] == [("acme-owner", "fine")]
    assert events(service.db, "request.approval_recorded") == []


def test_r23_first_approval_is_recorded_told_and_stays_pending(service: CommandService) -> None:
    request_id = two_person(service)
    before = len(events(service.db, "notification.requested"))
    reply = decide(service, request_id, "owner", comment="looks right")
    request = reply["result"]["request"]
    assert request["state"] == "pending"
    assert (request["decided_at"], request["decided_by"], request["comment"]) == (None,) * 3
    assert request["history"][-1] | {"at": None} == {
        "from": "pending",
        "to": "pending",
        "trigger": "approve",
        "actor_id": "acme-owner",
        "at": None,
        "reason": "looks right",
        "channel": "amqp",
    }
    assert request["approvals"] == [
        {"actor_id": "acme-owner", "at": request["history"][-1]["at"], "comment": "looks right"}
    ]
    [recorded] = events(service.db, "request.approval_recorded")
    assert recorded["data"]["approver_id"] == "acme-owner"
    assert recorded["data"]["request"] == request
    assert recorded["request_id"] == request_id
    assert events(service.db, "request.approved") == []
    # The other decider (a billing admin, whom the submit did not email) is asked.
    told = events(service.db, "notification.requested")[before:]
    assert [(n["data"]["template"], n["data"]["recipient"]["user_id"]) for n in told] == [
        ("request_approval_recorded", "acme-billing")
    ]
    text = " ".join(told[0]["data"]["text"].split())
    assert "Acme Owner approved Acme Admin's request" in text
    assert "Comment from Acme Owner: looks right" in text
    # The request's get shows the approvals too, and the subscription is unchanged.
    got = send(service, "request.get", {"request_id": request_id, "actor_id": "acme-admin"})
    assert got["result"]["request"]["approvals"] == request["approvals"]
    listed = send(service, "request.list", {"account_id": "acme", "actor_id": "acme-admin"})
    assert listed["result"]["requests"][0]["approvals"] == request["approvals"]
    assert events(service.db, "subscription.changed") == []


def test_r23_the_same_decider_approving_twice_is_forbidden(service: CommandService) -> None:
    request_id = two_person(service)
    assert decide(service, request_id, "owner")["ok"]
    before = counts(service.db)
    refused = error(decide(service, request_id, "owner"))
    assert refused["code"] == "forbidden"
    assert [d["rule"] for d in refused["details"]] == ["R23"]
    after = counts(service.db)
    assert after.pop("audit_log") == before.pop("audit_log") + 1
    assert after.pop("processed_commands") == before.pop("processed_commands") + 1
    assert after == before


def test_r23_second_approval_by_another_decider_applies_the_change(
    service: CommandService,
) -> None:
    request_id = two_person(service)
    decide(service, request_id, "owner", comment="first")
    reply = decide(service, request_id, "billing", comment="second")
    request = reply["result"]["request"]
    assert request["state"] == "approved"
    assert request["decided_by"] == "acme-billing"
    assert [(a["actor_id"], a["comment"]) for a in request["approvals"]] == [
        ("acme-owner", "first"),
        ("acme-billing", "second"),
    ]
    assert [h["to"] for h in request["history"]] == ["pending", "pending", "approved"]
    [approved] = events(service.db, "request.approved")
    assert approved["data"]["request"] == request
    [changed] = events(service.db, "subscription.changed")
    assert changed["data"]["new"]["products"][0]["seats"] == 15
    assert len(events(service.db, "request.approval_recorded")) == 1
    # The requester is told of the approval (R17), once.
    to_requester = [
        n
        for n in events(service.db, "notification.requested")
        if n["data"]["recipient"]["user_id"] == "acme-admin"
    ]
    assert [n["data"]["template"] for n in to_requester] == ["request_approved"]


def test_r12_the_second_approval_re_validates_the_change(service: CommandService) -> None:
    request_id = two_person(service)
    decide(service, request_id, "owner")
    # The product is gone from the subscription since: the change no longer applies.
    gone = account(products=[{"product": "guide", "plan": "professional", "seats": 10}])
    assert send(service, "account.upsert", gone)["ok"]
    refused = error(decide(service, request_id, "billing"))
    assert refused["code"] == "invalid_change"
    got = send(service, "request.get", {"request_id": request_id, "actor_id": "acme-admin"})
    assert got["result"]["request"]["state"] == "pending"
    assert len(got["result"]["request"]["approvals"]) == 1


@pytest.mark.parametrize("who", ["owner", "billing"])
def test_r23_a_reject_by_either_decider_ends_it(service: CommandService, who: str) -> None:
    request_id = two_person(service)
    decide(service, request_id, "owner")
    reply = decide(service, request_id, who, "reject", comment="no budget")
    assert reply["result"]["request"]["state"] == "rejected"
    assert error(decide(service, request_id, "billing"))["code"] == "invalid_state"
    assert events(service.db, "subscription.changed") == []


def test_r23_removing_the_threshold_approves_nothing_by_itself(service: CommandService) -> None:
    request_id = two_person(service)
    decide(service, request_id, "owner")
    assert with_threshold(service, None)["ok"]
    got = send(service, "request.get", {"request_id": request_id, "actor_id": "acme-admin"})
    assert got["result"]["request"]["state"] == "pending"
    assert events(service.db, "request.approved") == []
    # The first approver still cannot approve again; the next decider's approval completes it.
    assert error(decide(service, request_id, "owner"))["code"] == "forbidden"
    assert decide(service, request_id, "billing")["result"]["request"]["state"] == "approved"


def test_r23_a_threshold_set_after_the_submit_needs_two_at_approval(
    service: CommandService,
) -> None:
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    assert with_threshold(service, ABOVE_575)["ok"]
    assert decide(service, request_id, "owner")["result"]["request"]["state"] == "pending"


def test_r23_raising_the_threshold_above_a_request_with_one_approval_lets_the_next_approve(
    service: CommandService,
) -> None:
    seed(service)
    assert with_threshold(service, ABOVE_575)["ok"]
    request_id = submit(service)["result"]["request"]["request_id"]
    decide(service, request_id, "owner")
    assert with_threshold(service, {"second_above": "10000.00"})["ok"]  # raised above it
    assert events(service.db, "request.approved") == []
    assert decide(service, request_id, "billing")["result"]["request"]["state"] == "approved"


def test_r17_a_withdrawal_after_the_first_approval_tells_every_decider_asked(
    service: CommandService,
) -> None:
    request_id = two_person(service)
    decide(service, request_id, "owner")
    before = len(events(service.db, "notification.requested"))
    send(service, "request.cancel", {"request_id": request_id, "actor_id": "acme-admin"})
    told = events(service.db, "notification.requested")[before:]
    assert sorted(n["data"]["recipient"]["user_id"] for n in told) == [
        "acme-billing",
        "acme-owner",
    ]
