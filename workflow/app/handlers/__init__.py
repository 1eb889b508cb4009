"""One handler per command of the wire contract; routing is the dict at the bottom."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workflow.app.context import CommandContext
from workflow.app.handlers.accounts import upsert_account
from workflow.app.handlers.cancellation import cancel_request
from workflow.app.handlers.catalog import get_catalog
from workflow.app.handlers.decisions import decide_request
from workflow.app.handlers.members import remove_member, upsert_member
from workflow.app.handlers.queries import get_request, list_requests
from workflow.app.handlers.submission import preview_request, submit_request
from workflow.contract import names as n

Handler = Callable[[Any, CommandContext], dict[str, Any]]

HANDLERS: dict[str, Handler] = {
    n.ACCOUNT_UPSERT: upsert_account,
    n.MEMBER_UPSERT: upsert_member,
    n.MEMBER_REMOVE: remove_member,
    n.REQUEST_PREVIEW: preview_request,
    n.REQUEST_SUBMIT: submit_request,
    n.REQUEST_DECIDE: decide_request,
    n.REQUEST_CANCEL: cancel_request,
    n.REQUEST_GET: get_request,
    n.REQUEST_LIST: list_requests,
    n.CATALOG_GET: get_catalog,
}
