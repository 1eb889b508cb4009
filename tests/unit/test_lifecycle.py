"""The lifecycle machine on its own: transitions, guards, history and the diagram."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from policies.facts import (
    Account,
    Actor,
    CatalogFacts,
    Change,
    ProductLine,
    Subscription,
    Threshold,
)
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


BILLING = Actor("b", "acme", "billing_admin")
ABOVE = Threshold(Decimal("100.00"), "USD")


def approval(
    actor: Actor, approvers: tuple[str, ...] = (), threshold: Threshold | None = ABOVE
) -> Facts:
    """An approval of a request costing 150.00 USD a month."""
    return Facts(
        at=AT,
        actor=actor,
        actor_id=actor.user_id,
        changes=submission().changes,
        subscription=SUBSCRIPTION,
        catalog=CATALOG,
        approvers=approvers,
        total=Decimal("150.00"),
        total_currency="USD",
        threshold=threshold,
    )


def test_r23_a_first_approval_above_the_threshold_stays_pending_in_the_history() -> None:
    request = pending_request()
    assert fire(request, "approve", approval(OWNER))
    assert request.state == "pending"
    step = request.steps[-1]
    assert (step.from_state, step.to_state, step.trigger, step.actor_id) == (
        "pending",
        "pending",
        "approve",
        "o",
    )
    assert fire(request, "approve", approval(BILLING, ("o",)))
    assert request.state == "approved"


def test_r23_the_same_decider_approving_again_is_forbidden_and_changes_nothing() -> None:
    request = pending_request()
    assert fire(request, "approve", approval(OWNER))
    steps = len(request.steps)
    for threshold in (ABOVE, None):  # lowering the threshold does not make it count twice
        decision = fire(request, "approve", approval(OWNER, ("o",), threshold))
        assert [(d.rule, d.code) for d in decision.denials] == [("R23", "forbidden")]
        assert (request.state, len(request.steps)) == ("pending", steps)


def test_r23_one_approval_is_enough_once_the_threshold_is_removed() -> None:
    request = pending_request()
    assert fire(request, "approve", approval(OWNER))
    assert fire(request, "approve", approval(BILLING, ("o",), None))
    assert request.state == "approved"


def test_r23_either_decider_may_still_reject_after_a_first_approval() -> None:
    request = pending_request()
    assert fire(request, "approve", approval(OWNER))
    assert fire(request, "reject", Facts(at=AT, actor=OWNER, reason="changed my mind"))
    assert request.state == "rejected"


def test_r23_a_first_approval_is_refused_by_r2_and_r12_as_any_approval() -> None:
    request = pending_request()
    decision = fire(request, "approve", approval(ADMIN))
    assert [d.rule for d in decision.denials] == ["R2"]
    gone = Subscription("USD", "monthly", ())
    facts = approval(OWNER)
    stale = Facts(**{**facts.__dict__, "subscription": gone})
    assert fire(request, "approve", stale).code == "invalid_change"
    assert (request.state, len(request.steps)) == ("pending", 1)


def test_diagram_shows_the_first_of_two_approvals() -> None:
    assert "pending --> pending: approve (first of two, R23)" in mermaid()


def test_the_readme_shows_the_diagram_the_machine_draws() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert f"```mermaid\n{mermaid()}```" in readme
