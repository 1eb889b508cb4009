"""Time-driven transition (R14): a pending request nobody decided in time expires."""

from __future__ import annotations

from typing import Any

from workflow.handlers.lookups import request_and_account
from workflow.lifecycle import Facts, Request, fire
from workflow.uow import UnitOfWork


def expire_request(request_id: str, uow: UnitOfWork, reason: str) -> dict[str, Any] | None:
    """Expire ``request_id`` if it is still pending; ``None`` when something else ended it
    first (another worker, or a decision that won the race)."""
    row, account = request_and_account(uow.store, request_id)
    request = Request(row["request_id"], row["account_id"], row["requester_id"], row["state"])
    if not fire(request, "expire", Facts(at=uow.now, reason=reason)):
        return None
    view = uow.record(request, {"decided_at": uow.now})
    uow.notify(
        "request_expired",
        uow.members_by_id(row["account_id"], [row["requester_id"]]),
        view,
        {"account": account["name"], "request_id": request_id},
    )
    return view
