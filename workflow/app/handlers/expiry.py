"""Time-driven transition (R14): a pending request nobody decided in time expires."""

from __future__ import annotations

from typing import Any

from workflow.app.context import CommandContext
from workflow.app.handlers.lookups import request_and_account
from workflow.domain.lifecycle import Facts, Request, fire


def expire_request(request_id: str, ctx: CommandContext, reason: str) -> dict[str, Any] | None:
    """Expire ``request_id`` if it is still pending; ``None`` when something else ended it
    first (another worker, or a decision that won the race)."""
    row, account = request_and_account(ctx.store, request_id)
    request = Request(row["request_id"], row["account_id"], row["requester_id"], row["state"])
    if not fire(request, "expire", Facts(at=ctx.now, reason=reason)):
        return None
    view = ctx.record(request, {"decided_at": ctx.now})
    ctx.notify(
        "request_expired",
        ctx.members_by_id(row["account_id"], [row["requester_id"]]),
        view,
        {"account": account["name"], "request_id": request_id},
    )
    return view
