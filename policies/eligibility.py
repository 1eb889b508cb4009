"""Which accounts may use requests at all (R5)."""

from __future__ import annotations

from policies.decision import ALLOW, Decision, ErrorCode
from policies.facts import Account


def is_eligible(account: Account) -> Decision:
    """R5: only a sales-assisted account that allows changes; the reason says which kind it is."""
    if account.type == "self_service":
        return Decision.deny(
            "R5",
            ErrorCode.NOT_ELIGIBLE,
            f"account {account.account_id} is self-service: its owner or a billing admin "
            "changes the subscription directly, so requests are not available",
        )
    if not account.allows_subscription_changes:
        return Decision.deny(
            "R5",
            ErrorCode.NOT_ELIGIBLE,
            f"account {account.account_id} is managed by the vendor: "
            "subscription changes go through the vendor, not through requests",
        )
    return ALLOW
