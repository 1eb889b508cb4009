"""request.decide: approve (applying the change, R12) or reject (with a reason, R19)."""

from __future__ import annotations

from typing import Any

from policies.facts import Change
from workflow.app.context import CommandContext
from workflow.app.handlers.lookups import request_and_account
from workflow.contract.messages import RequestDecide
from workflow.contract.names import SUBSCRIPTION_CHANGED
from workflow.domain.lifecycle import Facts, Request, fire
from workflow.domain.summary import apply_changes
from workflow.errors import Refused
from workflow.persistence.store import to_account, to_actor


def decide_request(cmd: RequestDecide, ctx: CommandContext) -> dict[str, Any]:
    store = ctx.store
    row, account = request_and_account(store, cmd.request_id)
    request = Request(row["request_id"], row["account_id"], row["requester_id"], row["state"])
    changes = [Change(**item) for item in row["changes"]]
    subscription = store.subscription(account)
    facts = Facts(
        at=ctx.now,
        actor=to_actor(store.member(row["account_id"], cmd.actor_id)),
        actor_id=cmd.actor_id,
        account=to_account(account),
        changes=changes,
        subscription=subscription,
        catalog=ctx.catalog.facts(),
        reason=cmd.comment,
    )
    decision = fire(request, cmd.decision, facts)  # the trigger is named as the decision
    if not decision:
        raise Refused(decision, account_id=row["account_id"], request_id=row["request_id"])
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
    actor = facts.actor
    ctx.notify(
        f"request_{request.state}",
        ctx.members_by_id(row["account_id"], [row["requester_id"]]),
        view,
        {
            "account": account["name"],
            "actor": store.member_names(row["account_id"], [cmd.actor_id]).get(cmd.actor_id)
            or (actor.user_id if actor else cmd.actor_id),
            "request_id": row["request_id"],
            "comment": cmd.comment,
        },
    )
    return {"request": view}


def _subscription_data(subscription: Any) -> dict[str, Any]:
    return {
        "currency": subscription.currency,
        "billing_cycle": subscription.billing_cycle,
        "products": [
            {"product": p.product, "plan": p.plan, "seats": p.seats} for p in subscription.products
        ],
    }
