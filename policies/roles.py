"""Who may do what with a request (R1-R4), judged on the directory's roles only."""

from __future__ import annotations

from typing import TypeGuard

from policies.decision import ALLOW, Decision, ErrorCode
from policies.facts import Actor, Role

BILLING_ROLES: frozenset[Role] = frozenset({"owner", "billing_admin"})
"""Roles holding billing permission: they change the subscription and decide requests."""

_ROLE_NAMES: dict[Role, str] = {
    "owner": "the account owner",
    "billing_admin": "a billing admin",
    "admin": "an admin",
    "agent": "an agent",
}


def _member_of(actor: Actor | None, account_id: str) -> TypeGuard[Actor]:
    """A role only counts in its own account: nobody acts on another account's requests."""
    return actor is not None and actor.account_id == account_id


def may_request(actor: Actor) -> Decision:
    """R1: only an admin without billing permission asks; billing holders act directly."""
    if actor.role == "admin":
        return ALLOW
    if actor.role in BILLING_ROLES:
        return Decision.deny(
            "R1",
            ErrorCode.FORBIDDEN,
            f"as {_ROLE_NAMES[actor.role]} you have billing permission: "
            "update the subscription directly",
        )
    return Decision.deny(
        "R1",
        ErrorCode.FORBIDDEN,
        "only an admin without billing permission can request subscription changes",
    )


def may_decide(actor: Actor | None, account_id: str) -> Decision:
    """R2: only the owner or a billing admin of the request's own account decides it."""
    if not _member_of(actor, account_id):
        return Decision.deny(
            "R2",
            ErrorCode.FORBIDDEN,
            f"you are not a member of account {account_id}; "
            "only its owner or a billing admin can approve or reject its requests",
        )
    if actor.role in BILLING_ROLES:
        return ALLOW
    return Decision.deny(
        "R2",
        ErrorCode.FORBIDDEN,
        f"as {_ROLE_NAMES[actor.role]} you cannot approve or reject requests; "
        "ask the owner or a billing admin of the account",
    )


def may_cancel(actor: Actor | None, account_id: str, requester_id: str) -> Decision:
    """R4: the requester withdraws their own request; the deciders may also cancel it."""
    if _member_of(actor, account_id) and (
        actor.user_id == requester_id or actor.role in BILLING_ROLES
    ):
        return ALLOW
    return Decision.deny(
        "R4",
        ErrorCode.FORBIDDEN,
        f"only the requester ({requester_id}), the owner or a billing admin "
        f"of account {account_id} can cancel this request",
    )


def may_view(actor: Actor | None, account_id: str) -> Decision:
    """R3: a request is visible to the members of its account, as the directory knows them."""
    if _member_of(actor, account_id):
        return ALLOW
    return Decision.deny(
        "R3",
        ErrorCode.FORBIDDEN,
        f"you are not a member of account {account_id}, so you cannot see its requests",
    )
