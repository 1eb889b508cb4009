"""request.cancel: withdrawn by the requester or cancelled by a decider (R4); the other
side is told (R17)."""

from __future__ import annotations

from typing import Any

from workflow.app.context import CommandContext
from workflow.app.handlers.lookups import request_and_account
from workflow.contract.messages import RequestCancel
from workflow.domain.lifecycle import Facts, Request, fire
from workflow.errors import Refused
from workflow.persistence.store import to_actor


def cancel_request(cmd: RequestCancel, ctx: CommandContext) -> dict[str, Any]:
    store = ctx.store
    row, account = request_and_account(store, cmd.request_id)
    request = Request(row["request_id"], row["account_id"], row["requester_id"], row["state"])
    actor = to_actor(store.member(row["account_id"], cmd.actor_id))
    facts = Facts(at=ctx.now, actor=actor, actor_id=cmd.actor_id, reason=cmd.reason)
    decision = fire(request, "cancel", facts)
    if not decision:
        raise Refused(decision, account_id=row["account_id"], request_id=row["request_id"])
    view = ctx.record(
        request, {"decided_at": ctx.now, "decided_by": cmd.actor_id, "comment": cmd.reason}
    )
    names = store.member_names(row["account_id"], [cmd.actor_id, row["requester_id"]])
    withdrawn = cmd.actor_id == row["requester_id"]
    told = row["notified"] if withdrawn else [row["requester_id"]]
    ctx.notify(
        "request_withdrawn" if withdrawn else "request_cancelled",
        ctx.members_by_id(row["account_id"], told),
        view,
        {
            "account": account["name"],
            "requester": names.get(row["requester_id"], row["requester_id"]),
            "actor": names.get(cmd.actor_id, cmd.actor_id),
            "request_id": row["request_id"],
            "comment": cmd.reason,
        },
    )
    return {"request": view}
