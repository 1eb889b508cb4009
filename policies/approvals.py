"""Two-person approval (R23): how many deciders a request needs, and that each counts once.

The threshold is the account's at the moment of each approval, never the one in force when
the request was submitted: lowering or removing it changes what the next approval does, and
nothing happens to a request without one.
"""

from __future__ import annotations

from collections.abc import Collection
from decimal import Decimal

from policies.decision import ALLOW, Decision, ErrorCode
from policies.facts import Threshold


def approvals_needed(total: Decimal, currency: str | None, threshold: Threshold | None) -> int:
    """R23: two different deciders when the request's total per billing period exceeds the
    account's ``approval.second_above``, else one. A total priced in another currency than
    the threshold's (the subscription changed currency since the submit) cannot be compared,
    so it needs two: the rule never gets weaker by a currency change."""
    if threshold is None:
        return 1
    if threshold.currency is not None and currency != threshold.currency:
        return 2
    return 2 if total > threshold.second_above else 1


def completes(actor_id: str, approvers: Collection[str], needed: int) -> bool:
    """R23: whether this approval brings the distinct approvers up to ``needed``; the same
    decider approving again adds nobody."""
    return len({*approvers, actor_id}) >= needed


def not_approved_before(actor_id: str, approvers: Collection[str]) -> Decision:
    """R23: the same decider cannot approve twice, even once the threshold was lowered:
    the second pair of eyes is another person's."""
    if actor_id not in approvers:
        return ALLOW
    return Decision.deny(
        "R23",
        ErrorCode.FORBIDDEN,
        "you approved this request already; it needs the approval of another decider "
        "(the owner or a billing admin)",
    )
