"""One handler per command of the wire contract; routing is the dict at the bottom."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workflow.app.context import CommandContext
from workflow.app.handlers.accounts import upsert_account
from workflow.app.handlers.cancellation import cancel_request
from workflow.app.handlers.decisions import decide_request
from workflow.app.handlers.members import remove_member, upsert_member
from workflow.app.handlers.queries import get_request, list_requests
from workflow.app.handlers.submission import preview_request, submit_request

Handler = Callable[[Any, CommandContext], dict[str, Any]]

HANDLERS: dict[str, Handler] = {
    "account.upsert": upsert_account,
    "member.upsert": upsert_member,
    "member.remove": remove_member,
    "request.preview": preview_request,
    "request.submit": submit_request,
    "request.decide": decide_request,
    "request.cancel": cancel_request,
    "request.get": get_request,
    "request.list": list_requests,
}
