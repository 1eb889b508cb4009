"""The pure rules of ``policies``, one or more tests per domain rule (R1-R19 and R23; the
timers, R14 and R20-R22, in test_timers.py)."""

from __future__ import annotations

import ast
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import policies
from policies.approvals import approvals_needed, completes, not_approved_before
from policies.changes import contradictions, in_scope, is_addable, is_valid, validate_changes
from policies.comments import reject_has_comment
from policies.decision import ALLOW, Decision, ErrorCode
from policies.eligibility import is_eligible
from policies.facts import (
    OUT_OF_SCOPE_CHANGES,
    Account,
    Actor,
    CatalogFacts,
    Change,
    ProductLine,
    Role,
    Subscription,
    Threshold,
)
from policies.lifecycle import is_pending, no_other_pending
from policies.roles import may_cancel, may_decide, may_request, may_view
from policies.rules import RULES
from tests.contract import ERROR_CODES

SUITE_PLANS = ("team", "growth", "professional", "enterprise", "enterprise_plus")
CATALOG = CatalogFacts(
    plans={
        "support": SUITE_PLANS,
        "suite": SUITE_PLANS,
        "guide": ("lite", "professional", "enterprise"),
        "explore": ("lite", "professional", "enterprise"),
    },
    addable=frozenset({"guide", "explore"}),
    names={"support": "Support", "suite": "Suite", "guide": "Guide", "explore": "Explore"},
)
SUBSCRIPTION = Subscription(
    currency="EUR",
    billing_cycle="monthly",
    products=(ProductLine("support", "professional", 10), ProductLine("guide", "lite", 10)),
)
NO_SUBSCRIPTION = Subscription(currency=None, billing_cycle=None)


def actor(role: Role, user_id: str = "u1", account_id: str = "acc1") -> Actor:
    return Actor(user_id=user_id, account_id=account_id, role=role)


def fields(decision: Decision) -> list[str | None]:
    return [d.field for d in decision.denials]


def only(decision: Decision) -> tuple[str | None, ErrorCode, str, str | None]:
    """The single denial of a decision, as (rule, code, reason, field)."""
    assert len(decision.denials) == 1, decision.denials
    d = decision.denials[0]
    return d.rule, d.code, d.reason, d.field


# --- Decision ---------------------------------------------------------------------


def test_allow_is_allowed_and_has_no_code_or_message() -> None:
    assert ALLOW.allowed
    assert bool(ALLOW)
    assert ALLOW.code is None
    assert ALLOW.message == ""


def test_code_follows_contract_precedence_not_insertion_order() -> None:
    decision = Decision.combine(
        [
            Decision.deny("R9", ErrorCode.INVALID_CHANGE, "bad plan"),
            Decision.deny("R8", ErrorCode.OUT_OF_SCOPE, "no removals"),
            Decision.deny("R1", ErrorCode.FORBIDDEN, "not you"),
        ]
    )
    assert not decision
    assert decision.code is ErrorCode.FORBIDDEN
    assert len(decision.denials) == 3


def test_error_codes_are_in_the_order_the_contract_lists_them() -> None:
    """contract.md, Replies: the top-level code is the one listed first (domain.md,
    clarifications, second edition)."""
    assert tuple(str(code) for code in ErrorCode) == ERROR_CODES
    both = Decision.deny("R1", ErrorCode.FORBIDDEN, "not you") + Decision.deny(
        "R5", ErrorCode.NOT_ELIGIBLE, "self-service"
    )
    assert both.code is ErrorCode.NOT_ELIGIBLE


def test_message_joins_the_reasons_of_the_leading_code_only() -> None:
    decision = (
        Decision.deny("R9", ErrorCode.INVALID_CHANGE, "first")
        + Decision.deny("R8", ErrorCode.OUT_OF_SCOPE, "hidden")
        + Decision.deny("R9", ErrorCode.INVALID_CHANGE, "second")
    )
    assert decision.code is ErrorCode.OUT_OF_SCOPE
    assert decision.message == "hidden"
    assert (decision + ALLOW).denials == decision.denials
    invalid_only = Decision(tuple(d for d in decision.denials if d.rule == "R9"))
    assert invalid_only.message == "first; second"


def test_denial_detail_omits_a_missing_rule_or_field() -> None:
    with_field = Decision.deny("R19", ErrorCode.INVALID_MESSAGE, "why?", "comment")
    without = Decision.deny("R11", ErrorCode.REQUEST_PENDING, "busy")
    assert with_field.denials[0].as_detail() == {
        "rule": "R19",
        "code": "invalid_message",
        "reason": "why?",
        "field": "comment",
    }
    assert "field" not in without.denials[0].as_detail()
    assert "rule" not in Decision.deny(None, ErrorCode.NOT_FOUND, "gone").denials[0].as_detail()


# --- package ------------------------------------------------------------------------


def test_rules_lists_r1_to_r23_with_a_summary_each() -> None:
    assert list(RULES) == [f"R{n}" for n in range(1, 24)]
    assert all(summary.strip() and "\n" not in summary for summary in RULES.values())


def test_policies_imports_only_the_standard_library_and_itself() -> None:
    package_dir = Path(policies.__file__).parent
    for source in package_dir.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top == "policies" or top in sys.stdlib_module_names, (source, name)


# --- R1-R4: roles -------------------------------------------------------------------


def test_r1_admin_may_request() -> None:
    assert may_request(actor("admin")) == ALLOW


@pytest.mark.parametrize("role", ["owner", "billing_admin"])
def test_r1_billing_roles_are_told_to_change_directly(role: Role) -> None:
    rule, code, reason, field = only(may_request(actor(role)))
    assert (rule, code, field) == ("R1", ErrorCode.FORBIDDEN, None)
    assert "you have billing permission: update the subscription directly" in reason


def test_r1_agent_gets_a_plain_refusal() -> None:
    rule, code, reason, _ = only(may_request(actor("agent")))
    assert (rule, code) == ("R1", ErrorCode.FORBIDDEN)
    assert "billing permission: update" not in reason
    assert "only an admin without billing permission" in reason


@pytest.mark.parametrize("role", ["owner", "billing_admin"])
def test_r2_billing_roles_of_the_account_may_decide(role: Role) -> None:
    assert may_decide(actor(role), "acc1") == ALLOW


@pytest.mark.parametrize("role", ["admin", "agent"])
def test_r2_roles_without_billing_permission_may_not_decide(role: Role) -> None:
    rule, code, _, _ = only(may_decide(actor(role), "acc1"))
    assert (rule, code) == ("R2", ErrorCode.FORBIDDEN)


def test_r2_nobody_decides_for_another_account() -> None:
    for candidate in (None, actor("owner", account_id="acc2")):
        rule, code, reason, _ = only(may_decide(candidate, "acc1"))
        assert (rule, code) == ("R2", ErrorCode.FORBIDDEN)
        assert "acc1" in reason


@pytest.mark.parametrize(
    ("candidate", "allowed"),
    [
        (actor("admin", user_id="requester"), True),
        (actor("agent", user_id="requester"), True),
        (actor("owner"), True),
        (actor("billing_admin"), True),
        (actor("admin"), False),
        (actor("agent"), False),
        (actor("owner", account_id="acc2"), False),
        (actor("admin", user_id="requester", account_id="acc2"), False),
        (None, False),
    ],
)
def test_r4_requester_owner_or_billing_admin_may_cancel(
    candidate: Actor | None, allowed: bool
) -> None:
    decision = may_cancel(candidate, "acc1", "requester")
    assert decision.allowed is allowed
    if not allowed:
        rule, code, reason, _ = only(decision)
        assert (rule, code) == ("R4", ErrorCode.FORBIDDEN)
        assert "requester" in reason


@pytest.mark.parametrize("role", ["owner", "billing_admin", "admin", "agent"])
def test_r3_every_member_may_view(role: Role) -> None:
    assert may_view(actor(role), "acc1") == ALLOW


def test_r3_non_members_may_not_view() -> None:
    for candidate in (None, actor("owner", account_id="acc2")):
        rule, code, reason, _ = only(may_view(candidate, "acc1"))
        assert (rule, code) == ("R3", ErrorCode.FORBIDDEN)
        assert "acc1" in reason


# --- R5: eligibility ----------------------------------------------------------------


def test_r5_online_assisted_account_is_eligible() -> None:
    assert is_eligible(Account("acc1", "sales_assisted", True)) == ALLOW


@pytest.mark.parametrize(
    ("account", "named"),
    [
        (Account("acc1", "self_service", True), "self-service"),
        (Account("acc1", "self_service", False), "self-service"),
        (Account("acc1", "sales_assisted", False), "managed by the vendor"),
    ],
)
def test_r5_self_service_and_managed_accounts_are_refused_by_kind(
    account: Account, named: str
) -> None:
    rule, code, reason, _ = only(is_eligible(account))
    assert (rule, code) == ("R5", ErrorCode.NOT_ELIGIBLE)
    assert named in reason


# --- R7: addable products -----------------------------------------------------------


def test_r7_addable_product_is_allowed() -> None:
    assert is_addable(Change("add_product", "explore", "lite"), 0, CATALOG) == ALLOW


def test_r7_catalog_product_not_addable_names_the_addable_ones() -> None:
    rule, code, reason, field = only(is_addable(Change("add_product", "suite", "team"), 2, CATALOG))
    assert (rule, code, field) == ("R7", ErrorCode.INVALID_CHANGE, "changes[2].product")
    assert "Suite" in reason
    assert "Explore, Guide" in reason


def test_r7_other_types_and_unknown_products_are_left_to_other_rules() -> None:
    assert is_addable(Change("add_seats", "suite", quantity=1), 0, CATALOG) == ALLOW
    assert is_addable(Change("add_product", "nope", "lite"), 0, CATALOG) == ALLOW


# --- R8: out of scope ---------------------------------------------------------------


@pytest.mark.parametrize("kind", OUT_OF_SCOPE_CHANGES)
def test_r8_every_out_of_scope_type_is_refused_with_a_reason(kind: str) -> None:
    rule, code, reason, field = only(in_scope(Change(kind, "support"), 3))
    assert (rule, code, field) == ("R8", ErrorCode.OUT_OF_SCOPE, "changes[3].type")
    assert reason


@pytest.mark.parametrize("kind", ["change_payment_method", "manage_invoice"])
def test_r8_payments_and_invoices_are_never_requestable(kind: str) -> None:
    assert "are never requestable" in only(in_scope(Change(kind), 0))[2]


def test_r8_grantable_and_unknown_types_are_in_scope() -> None:
    assert in_scope(Change("add_seats", "support", quantity=1), 0) == ALLOW
    assert in_scope(Change("teleport"), 0) == ALLOW


# --- R9: validation -----------------------------------------------------------------


def check(change: Change, subscription: Subscription = SUBSCRIPTION) -> Decision:
    return is_valid(change, 0, subscription, CATALOG)


@pytest.mark.parametrize(
    "change",
    [
        Change("add_seats", "support", quantity=1),
        Change("add_product", "explore", "professional"),
        Change("add_product", "explore", "lite", seats=3),
        Change("upgrade_plan", "support", "enterprise"),
        Change("upgrade_plan", "guide", "enterprise"),
    ],
)
def test_r9_valid_changes_pass(change: Change) -> None:
    assert check(change) == ALLOW


def test_r9_unknown_change_type_is_refused() -> None:
    rule, code, reason, field = only(check(Change("teleport", "support")))
    assert (rule, code, field) == ("R9", ErrorCode.INVALID_CHANGE, "changes[0].type")
    assert "teleport" in reason


def test_r9_out_of_scope_types_are_left_to_r8() -> None:
    assert check(Change("remove_seats", "support", quantity=1)) == ALLOW


def test_r9_unknown_product_is_refused() -> None:
    rule, code, reason, field = only(check(Change("add_seats", "chat", quantity=1)))
    assert (rule, code, field) == ("R9", ErrorCode.INVALID_CHANGE, "changes[0].product")
    assert "chat" in reason


def test_r9_missing_product_is_refused() -> None:
    assert fields(check(Change("upgrade_plan", plan="growth"))) == ["changes[0].product"]


@pytest.mark.parametrize("kind", ["add_product", "upgrade_plan"])
def test_r9_unknown_plan_of_the_product_is_refused(kind: str) -> None:
    product = "explore" if kind == "add_product" else "support"
    rule, code, reason, field = only(check(Change(kind, product, "galactic")))
    assert (rule, code, field) == ("R9", ErrorCode.INVALID_CHANGE, "changes[0].plan")
    assert "galactic" in reason


def test_r9_seats_on_a_product_not_owned_and_bad_quantity_give_two_denials() -> None:
    decision = check(Change("add_seats", "explore", quantity=0))
    assert {d.rule for d in decision.denials} == {"R9"}
    assert fields(decision) == ["changes[0].product", "changes[0].quantity"]
    assert "Explore" in decision.denials[0].reason


@pytest.mark.parametrize("quantity", [None, 0, -4])
def test_r9_seat_quantity_below_one_is_refused(quantity: int | None) -> None:
    rule, _, reason, field = only(check(Change("add_seats", "support", quantity=quantity)))
    assert (rule, field) == ("R9", "changes[0].quantity")
    assert "Support" in reason


def test_r9_adding_an_owned_product_without_plan_and_bad_seats_gives_three_denials() -> None:
    decision = check(Change("add_product", "guide", seats=0))
    assert decision.code is ErrorCode.INVALID_CHANGE
    assert fields(decision) == ["changes[0].product", "changes[0].plan", "changes[0].seats"]
    assert "already has Guide" in decision.denials[0].reason


def test_r9_upgrade_of_a_product_not_owned_is_refused() -> None:
    rule, _, reason, field = only(check(Change("upgrade_plan", "explore", "enterprise")))
    assert (rule, field) == ("R9", "changes[0].product")
    assert "Explore" in reason


def test_r9_upgrade_to_the_same_plan_is_refused() -> None:
    reason = only(check(Change("upgrade_plan", "support", "professional")))[2]
    assert "the same as the current plan professional" in reason


def test_r9_upgrade_to_lower_plan_is_refused() -> None:
    rule, code, reason, field = only(check(Change("upgrade_plan", "support", "growth")))
    assert (rule, code, field) == ("R9", ErrorCode.INVALID_CHANGE, "changes[0].plan")
    assert "growth" in reason
    assert "professional" in reason
    assert "enterprise, enterprise_plus" in reason


def test_r9_upgrade_from_the_highest_plan_is_refused() -> None:
    top = Subscription("EUR", "annual", (ProductLine("support", "enterprise_plus", 5),))
    reason = only(check(Change("upgrade_plan", "support", "team"), top))[2]
    assert "highest plan" in reason


def test_r9_upgrade_from_a_plan_the_catalog_does_not_rank_is_refused() -> None:
    legacy = Subscription("EUR", "monthly", (ProductLine("support", "legacy", 5),))
    assert fields(check(Change("upgrade_plan", "support", "enterprise"), legacy)) == [
        "changes[0].plan"
    ]


def test_r9_account_without_subscription_gives_one_denial() -> None:
    rule, code, reason, field = only(
        check(Change("add_seats", "support", quantity=0), NO_SUBSCRIPTION)
    )
    assert (rule, code, field) == ("R9", ErrorCode.INVALID_CHANGE, "changes")
    assert "no subscription" in reason


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (Change("add_seats", "support", quantity=1), Change("add_seats", "support", quantity=2)),
        (Change("add_product", "explore", "lite"), Change("add_product", "explore", "lite")),
        (Change("upgrade_plan", "support", "growth"), Change("upgrade_plan", "support", "team")),
        (Change("add_product", "explore", "lite"), Change("add_seats", "explore", quantity=1)),
        (Change("add_seats", "explore", quantity=1), Change("add_product", "explore", "lite")),
        (Change("add_product", "explore", "lite"), Change("upgrade_plan", "explore", "growth")),
    ],
)
def test_r9_contradicting_items_blame_the_later_one(first: Change, second: Change) -> None:
    rule, code, reason, field = only(contradictions([first, Change("add_seats", "guide"), second]))
    assert (rule, code, field) == ("R9", ErrorCode.INVALID_CHANGE, "changes[2]")
    assert "changes[0]" in reason
    assert "explore" in reason or "support" in reason


def test_r9_different_products_or_seats_with_upgrade_do_not_contradict() -> None:
    changes = [
        Change("add_seats", "support", quantity=1),
        Change("upgrade_plan", "support", "enterprise"),
        Change("add_seats", "guide", quantity=1),
        Change("remove_seats", "support"),
        Change("remove_seats", "support"),
    ]
    assert contradictions(changes) == ALLOW


def test_r9_each_repetition_is_reported() -> None:
    changes = [Change("add_seats", "support", quantity=1)] * 3
    assert fields(contradictions(changes)) == ["changes[1]", "changes[2]"]


# --- R7-R9 together -----------------------------------------------------------------


def test_r9_empty_request_is_refused() -> None:
    rule, code, reason, field = only(validate_changes([], SUBSCRIPTION, CATALOG))
    assert (rule, code, field) == ("R9", ErrorCode.INVALID_CHANGE, "changes")
    assert "at least one change" in reason


def test_r9_valid_request_passes_validation() -> None:
    changes = [
        Change("add_seats", "support", quantity=5),
        Change("upgrade_plan", "support", "enterprise"),
        Change("add_product", "explore", "professional"),
    ]
    assert validate_changes(changes, SUBSCRIPTION, CATALOG) == ALLOW


def test_r9_validation_returns_every_problem_across_items_in_order() -> None:
    changes = [
        Change("remove_seats", "chat", quantity=-1),
        Change("add_product", "suite", "team"),
        Change("upgrade_plan", "support", "growth"),
        Change("upgrade_plan", "support", "enterprise"),
    ]
    decision = validate_changes(changes, SUBSCRIPTION, CATALOG)
    assert [(d.rule, d.code, d.field) for d in decision.denials] == [
        ("R8", ErrorCode.OUT_OF_SCOPE, "changes[0].type"),
        ("R7", ErrorCode.INVALID_CHANGE, "changes[1].product"),
        ("R9", ErrorCode.INVALID_CHANGE, "changes[2].plan"),
        ("R9", ErrorCode.INVALID_CHANGE, "changes[3]"),
    ]
    assert decision.code is ErrorCode.OUT_OF_SCOPE


def test_r9_missing_subscription_is_reported_once_per_request() -> None:
    changes = [Change("add_seats", "support", quantity=1), Change("add_product", "explore", "lite")]
    decision = validate_changes(changes, NO_SUBSCRIPTION, CATALOG)
    assert fields(decision) == ["changes"]


# --- R11, R13: lifecycle ------------------------------------------------------------


def test_r11_no_pending_request_allows_a_submit() -> None:
    assert no_other_pending(None) == ALLOW


def test_r11_pending_request_blocks_and_is_named() -> None:
    rule, code, reason, _ = only(no_other_pending("req-42"))
    assert (rule, code) == ("R11", ErrorCode.REQUEST_PENDING)
    assert "request req-42 is already pending" in reason


def test_r13_pending_request_may_move() -> None:
    assert is_pending("pending", "req-1") == ALLOW


@pytest.mark.parametrize("state", ["approved", "rejected", "cancelled", "expired", "voided"])
def test_r13_final_states_are_refused_naming_the_state(state: str) -> None:
    rule, code, reason, _ = only(is_pending(state, "req-1"))
    assert (rule, code) == ("R13", ErrorCode.INVALID_STATE)
    assert f"request req-1 is already {state}" in reason


# --- R19: comments ------------------------------------------------------------------


@pytest.mark.parametrize("comment", [None, "", "   \n"])
def test_r19_reject_without_comment_is_an_invalid_message(comment: str | None) -> None:
    rule, code, _, field = only(reject_has_comment("reject", comment))
    assert (rule, code, field) == ("R19", ErrorCode.INVALID_MESSAGE, "comment")


def test_r19_reject_with_comment_and_approve_without_one_are_allowed() -> None:
    assert reject_has_comment("reject", "over budget this quarter") == ALLOW
    assert reject_has_comment("approve", None) == ALLOW


# --- R23: two-person approval ---------------------------------------------------------------

USD_1000 = Threshold(Decimal("1000.00"), "USD")


def test_r23_without_a_threshold_one_decider_is_enough() -> None:
    assert approvals_needed(Decimal("1000000.00"), "USD", None) == 1


@pytest.mark.parametrize(
    ("total", "needed"),
    [("0.00", 1), ("999.99", 1), ("1000.00", 1), ("1000.01", 2), ("25000.00", 2)],
)
def test_r23_a_total_above_the_threshold_needs_two(total: str, needed: int) -> None:
    """ "Exceeds": a total equal to the threshold still needs one decider."""
    assert approvals_needed(Decimal(total), "USD", USD_1000) == needed


def test_r23_a_total_in_another_currency_than_the_threshold_needs_two() -> None:
    """The subscription changed currency since the submit: the amounts cannot be compared,
    and the rule never gets weaker for it."""
    assert approvals_needed(Decimal("1.00"), "EUR", USD_1000) == 2


def test_r23_a_threshold_of_an_account_without_currency_compares_the_amount() -> None:
    unpriced = Threshold(Decimal("1000.00"), None)
    assert approvals_needed(Decimal("999.00"), "EUR", unpriced) == 1
    assert approvals_needed(Decimal("1001.00"), "EUR", unpriced) == 2


def test_r23_two_different_deciders_complete_a_request_that_needs_two() -> None:
    assert not completes("olivia", (), 2)
    assert completes("bella", ("olivia",), 2)
    assert completes("olivia", (), 1)


def test_r23_the_same_decider_never_counts_twice() -> None:
    assert not completes("olivia", ("olivia",), 2)
    assert not completes("olivia", ("olivia", "olivia"), 2)


def test_r23_the_same_decider_cannot_approve_twice() -> None:
    rule, code, reason, field = only(not_approved_before("olivia", ("olivia",)))
    assert (rule, code, field) == ("R23", ErrorCode.FORBIDDEN, None)
    assert "approved this request already" in reason
    assert "another decider" in reason


def test_r23_a_decider_who_has_not_approved_may() -> None:
    assert not_approved_before("bella", ("olivia",)) is ALLOW
    assert not_approved_before("olivia", ()) is ALLOW
