"""request.preview and request.submit: the same checks; only submit stores and tells (R16)."""

from __future__ import annotations

from typing import Any

from workflow.app.context import CommandContext
from workflow.app.handlers.lookups import account_or_refuse, member_or_refuse
from workflow.contract.messages import RequestPreview, RequestSubmit, change_as_dict, to_change
from workflow.domain.ids import new_id
from workflow.domain.lifecycle import Facts, Request, fire
from workflow.domain.summary import summarize
from workflow.errors import Refused
from workflow.persistence.store import to_account, to_actor


def _checked(cmd: RequestPreview, ctx: CommandContext) -> tuple[Request, dict[str, Any], Any]:
    store = ctx.store
    account = account_or_refuse(store, cmd.account_id)
    actor = member_or_refuse(store, cmd.account_id, cmd.actor_id, "actor_id")
    changes = [to_change(item) for item in cmd.changes]
    subscription = store.subscription(account)
    request = Request(new_id(), cmd.account_id, cmd.actor_id)
    facts = Facts(
        at=ctx.now,
        actor=to_actor(actor),
        account=to_account(account),
        pending_request_id=store.pending_request_id(cmd.account_id),
        changes=changes,
        subscription=subscription,
        catalog=ctx.catalog.facts(),
        reason=getattr(cmd, "note", None),
    )
    decision = fire(request, "submit", facts)
    if not decision:
        raise Refused(decision, account_id=cmd.account_id)
    return request, summarize(changes, subscription, ctx.catalog), account


def preview_request(cmd: RequestPreview, ctx: CommandContext) -> dict[str, Any]:
    _, summary, _ = _checked(cmd, ctx)
    return {"summary": summary}


def submit_request(cmd: RequestSubmit, ctx: CommandContext) -> dict[str, Any]:
    request, summary, account = _checked(cmd, ctx)
    deciders = ctx.deciders(cmd.account_id)
    ctx.store.insert_request(
        {
            "request_id": request.request_id,
            "account_id": cmd.account_id,
            "requester_id": cmd.actor_id,
            "state": request.state,
            "changes": [change_as_dict(to_change(item)) for item in cmd.changes],
            "note": cmd.note,
            "summary": summary,
            "created_at": ctx.now,
            "notified": [d["user_id"] for d in deciders],
        }
    )
    view = ctx.record(request, None)
    ctx.notify(
        "request_submitted",
        deciders,
        view,
        {
            "account": account["name"],
            "requester": view["requester_name"] or cmd.actor_id,
            "request_id": request.request_id,
            "note": cmd.note,
        },
    )
    return {"request": view}
