"""request.decide: approve (applying the change, R12) or reject (with a reason, R19). Above
the account's threshold an approval is the first of two (R23): recorded, told to the other
deciders, and the request stays pending until another decider approves it too."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from policies.facts import Change
from policies.roles import BILLING_ROLES
from workflow.app.context import CommandContext
from workflow.app.handlers.lookups import request_and_account
from workflow.app.views import approvals
from workflow.contract.messages import RequestDecide
from workflow.contract.names import PENDING, REQUEST_APPROVAL_RECORDED, SUBSCRIPTION_CHANGED
from workflow.domain.lifecycle import Facts, Request, fire
from workflow.domain.summary import apply_changes
from workflow.errors import Refused
from workflow.persistence.store import Row, to_account, to_actor, to_threshold


def decide_request(cmd: RequestDecide, ctx: CommandContext) -> dict[str, Any]:
    store = ctx.store
    row, account = request_and_account(store, cmd.request_id)
    request = Request(row["request_id"], row["account_id"], row["requester_id"], row["state"])
    changes = [Change(**item) for item in row["changes"]]
    subscription = store.subscription(account)
    history = store.histories([row["request_id"]])[row["request_id"]]
    facts = Facts(
        at=ctx.now,
        actor=to_actor(store.member(row["account_id"], cmd.actor_id)),
        actor_id=cmd.actor_id,
        account=to_account(account),
        changes=changes,
        subscription=subscription,
        catalog=ctx.catalog.facts(),
        reason=cmd.comment,
        approvers=tuple(a["actor_id"] for a in approvals(history)),
        total=Decimal(row["summary"]["total"]),
        total_currency=row["summary"]["currency"],
        threshold=to_threshold(account),
    )
    decision = fire(request, cmd.decision, facts)  # the trigger is named as the decision
    if not decision:
        raise Refused(decision, account_id=row["account_id"], request_id=row["request_id"])
    if request.state == PENDING:
        return _first_of_two(cmd, ctx, request, row, account)
    if cmd.decision == "approve":
        changed = apply_changes(subscription, changes, ctx.catalog)
        store.replace_products(row["account_id"], changed.products)
        ctx.emit(
            SUBSCRIPTION_CHANGED,
            row["account_id"],
            {
                "old": _subscription_data(subscription),
                "new": _subscription_data(changed),
                "request_id": row["request_id"],
            },
            row["request_id"],
        )
    view = ctx.record(
        request, {"decided_at": ctx.now, "decided_by": cmd.actor_id, "comment": cmd.comment}
    )
    ctx.notify(
        f"request_{request.state}",
        ctx.members_by_id(row["account_id"], [row["requester_id"]]),
        view,
        _values(cmd, ctx, row, account),
    )
    return {"request": view}


def _first_of_two(
    cmd: RequestDecide, ctx: CommandContext, request: Request, row: Row, account: Row
) -> dict[str, Any]:
    """R23: the first approval is in the history; every other decider (the billing admins
    too, whatever R16 emailed) is asked for the second one, and counts from now on as told
    about the request (a withdrawal tells them, R17)."""
    deciders = ctx.store.members(row["account_id"], BILLING_ROLES)
    others = [m for m in deciders if m["user_id"] != cmd.actor_id]
    told = list(dict.fromkeys([*row["notified"], *(m["user_id"] for m in others)]))
    view = ctx.record(
        request,
        {"notified": told},
        event=REQUEST_APPROVAL_RECORDED,
        data={"approver_id": cmd.actor_id},
    )
    values = {**_values(cmd, ctx, row, account), "note": row["note"]}
    ctx.notify("request_approval_recorded", others, view, values)
    return {"request": view}


def _values(cmd: RequestDecide, ctx: CommandContext, row: Row, account: Row) -> dict[str, Any]:
    """What the emails of a decision say: the account, who decided, and their comment."""
    names = ctx.store.member_names(row["account_id"], [cmd.actor_id])
    return {
        "account": account["name"],
        "actor": names.get(cmd.actor_id) or cmd.actor_id,
        "request_id": row["request_id"],
        "comment": cmd.comment,
    }


def _subscription_data(subscription: Any) -> dict[str, Any]:
    return {
        "currency": subscription.currency,
        "billing_cycle": subscription.billing_cycle,
        "products": [
            {"product": p.product, "plan": p.plan, "seats": p.seats} for p in subscription.products
        ],
    }
