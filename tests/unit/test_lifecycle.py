"""The lifecycle machine on its own: transitions, guards, history and the diagram."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policies.facts import Account, Actor, CatalogFacts, Change, ProductLine, Subscription
from workflow.domain.lifecycle import FINAL_STATES, MACHINE, STATES, Facts, Request, fire, mermaid

AT = datetime(2026, 3, 1, tzinfo=UTC)
CATALOG = CatalogFacts(plans={"support": ("team", "professional")}, addable=frozenset())
SUBSCRIPTION = Subscription("USD", "monthly", (ProductLine("support", "team", 3),))
ELIGIBLE = Account("acme", "sales_assisted", True)
OWNER = Actor("o", "acme", "owner")
ADMIN = Actor("a", "acme", "admin")


def submission(actor: Actor = ADMIN, pending: str | None = None) -> Facts:
    return Facts(
        at=AT,
        actor=actor,
        account=ELIGIBLE,
        pending_request_id=pending,
        changes=[Change("add_seats", "support", quantity=2)],
        subscription=SUBSCRIPTION,
        catalog=CATALOG,
    )


def pending_request() -> Request:
    request = Request("r1", "acme", "a")
    assert fire(request, "submit", submission())
    return request


def test_submit_moves_to_pending_and_records_history() -> None:
    request = pending_request()
    assert request.state == "pending"
    step = request.steps[0]
    assert (step.from_state, step.to_state, step.trigger, step.actor_id) == (
        None,
        "pending",
        "submit",
        "a",
    )


def test_guard_refusal_keeps_state_and_explains() -> None:
    request = Request("r1", "acme", "o")
    decision = fire(request, "submit", submission(actor=OWNER, pending="r0"))
    assert not decision
    assert {d.rule for d in decision.denials} == {"R1", "R11"}
    assert request.state == "new"
    assert request.steps == []


@pytest.mark.parametrize("final", sorted(FINAL_STATES))
def test_r13_final_states_accept_no_trigger(final: str) -> None:
    request = Request("r1", "acme", "a", state=final)
    for trigger in ("approve", "reject", "cancel", "expire", "void"):
        decision = fire(request, trigger, Facts(at=AT, actor=OWNER, account=ELIGIBLE))
        assert decision.denials[0].rule == "R13"
        assert final in decision.message
    assert request.state == final


def test_one_machine_serves_many_requests_independently() -> None:
    first, second = pending_request(), pending_request()
    assert fire(
        first,
        "approve",
        Facts(
            at=AT,
            actor=OWNER,
            changes=submission().changes,
            subscription=SUBSCRIPTION,
            catalog=CATALOG,
        ),
    )
    assert (first.state, second.state) == ("approved", "pending")
    assert MACHINE.models == []  # requests are never registered on the shared machine


def test_r6_void_only_when_the_account_lost_eligibility() -> None:
    request = pending_request()
    assert not fire(request, "void", Facts(at=AT, account=ELIGIBLE))
    managed = Account("acme", "sales_assisted", False)
    assert fire(request, "void", Facts(at=AT, account=managed, reason="managed"))
    assert request.state == "voided"


def test_states_and_final_states_match_the_domain() -> None:
    assert set(STATES) == {"pending", "approved", "rejected", "cancelled", "expired", "voided"}
    assert all(MACHINE.get_state(s).final for s in FINAL_STATES)
    assert not MACHINE.get_state("pending").final


def test_diagram_is_generated_from_the_machine() -> None:
    diagram = mermaid()
    assert diagram.startswith("stateDiagram-v2")
    assert "[*] --> pending: submit" in diagram
    for trigger, dest in [
        ("approve", "approved"),
        ("reject", "rejected"),
        ("cancel", "cancelled"),
        ("expire", "expired"),
        ("void", "voided"),
    ]:
        assert f"pending --> {dest}: {trigger}" in diagram
        assert f"{dest} --> [*]" in diagram
