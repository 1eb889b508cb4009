"""request.get and request.list: read-only, for members of the account only."""

from __future__ import annotations

from typing import Any

from policies.decision import ErrorCode
from policies.roles import may_view
from workflow.app.context import CommandContext
from workflow.app.handlers.lookups import account_or_refuse
from workflow.app.views import request_view, request_views
from workflow.contract.messages import RequestGet, RequestList
from workflow.errors import Refused
from workflow.persistence.store import to_actor


def get_request(cmd: RequestGet, ctx: CommandContext) -> dict[str, Any]:
    store = ctx.store
    row = store.request(cmd.request_id)
    if row is not None:
        decision = may_view(
            to_actor(store.member(row["account_id"], cmd.actor_id)), row["account_id"]
        )
        if not decision:
            raise Refused(decision, account_id=row["account_id"], request_id=cmd.request_id)
        return {"request": request_view(store, row)}
    raise Refused.because(
        ErrorCode.NOT_FOUND,
        f"request {cmd.request_id} does not exist",
        field="request_id",
        request_id=cmd.request_id,
    )


def list_requests(cmd: RequestList, ctx: CommandContext) -> dict[str, Any]:
    store = ctx.store
    account_or_refuse(store, cmd.account_id)
    decision = may_view(to_actor(store.member(cmd.account_id, cmd.actor_id)), cmd.account_id)
    if not decision:
        raise Refused(decision, account_id=cmd.account_id)
    return {"requests": request_views(store, store.requests(cmd.account_id, cmd.state))}
