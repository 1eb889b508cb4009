"""Requests (the account's, newest first, filtered by state) and Request (lines, total,
note, pending age and expiry, approvals and whether it needs two (R23), history with
channels, who was told what; *Approve*, *Reject* and *Cancel* for those who may). Actions
become ``request.decide`` and ``request.cancel`` with the actor from the session (C1), never
from the form."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from consumers.web.console import DECIDERS, STATUS_OF_CODE, Console, Visit
from consumers.web.security import message_id
from consumers.web.texts import translator
from policies.approvals import approvals_needed
from policies.decision import ErrorCode
from workflow.contract.names import CHANNEL_WEB, PENDING, REQUEST_CANCEL, REQUEST_DECIDE, STATES
from workflow.persistence.store import to_threshold

NOTICES = ("submitted", "approved", "approval_recorded", "rejected", "cancelled", "already")
DECISIONS = ("approve", "reject")
NOTICE_OF = {"approve": "approved", "reject": "rejected"}


async def requests_page(console: Console, request: Request) -> Response:
    visit = await console.visit(request)
    if visit.member is None:
        return console.redirect("/signin", visit)
    state = request.query_params.get("state") or None
    if state is not None and state not in STATES:
        return console.error(visit, 400, "error.bad_form", problem="state")
    account = await run_in_threadpool(console.reads.account, visit.member.account_id)
    found = await run_in_threadpool(console.reads.requests, visit.member.account_id, state)
    ids = [r["decided_by"] for r in found if r["decided_by"]]
    names = await run_in_threadpool(console.reads.names, visit.member.account_id, ids)
    for r in found:
        r["_names"] = names
    return console.page(
        visit,
        "requests.html",
        title=translator(visit.locale)("req.title"),
        nav="requests",
        account=account,
        requests=found,
        states=STATES,
        state=state,
    )


async def load(console: Console, request_id: str, account_id: str) -> dict[str, Any] | None:
    """A request of this account with what its page shows; ``None`` for any other (C2)."""
    found = await run_in_threadpool(console.reads.request, request_id[:64])
    if found is None or found["account_id"] != account_id:
        return None
    ids = [h["actor_id"] for h in found["history"] if h["actor_id"]]
    found["_names"] = await run_in_threadpool(console.reads.names, account_id, ids)
    found["_told"] = await run_in_threadpool(console.reads.notifications, request_id)
    found["_needed"] = 1
    if found["state"] == PENDING:  # R23, as the next approval will judge it
        account = await run_in_threadpool(console.reads.account, account_id)
        threshold = None if account is None else to_threshold(account)
        summary = found["summary"]
        needed = approvals_needed(Decimal(summary["total"]), summary["currency"], threshold)
        found["_needed"] = needed
        found["_limit"] = None if threshold is None else threshold.second_above
    return found


def render_request(
    console: Console,
    visit: Visit,
    found: dict[str, Any],
    *,
    actor_id: str | None,
    role: str | None,
    action_url: str,
    bound_to: str,
    actions: bool = True,
    status: int = 200,
    **values: Any,
) -> Response:
    pending = found["state"] == PENDING
    can_decide = actions and pending and role in DECIDERS
    approved_by_me = any(a["actor_id"] == actor_id for a in found["approvals"])
    can_cancel = actions and pending and (role in DECIDERS or actor_id == found["requester_id"])
    notice_key = visit.request.query_params.get("notice")
    t = translator(visit.locale)
    notice = t(f"notice.{notice_key}") if notice_key in NOTICES else None
    return console.page(
        visit,
        "request.html",
        status=status,
        title=f"{t('req.heading')} {found['request_id']}",
        nav="requests",
        r=found,
        names=found["_names"],
        told=found["_told"],
        expires_at=console.expires_at(found),
        can_decide=can_decide,
        can_approve=can_decide and not approved_by_me,  # R23: nobody approves twice
        approved_by_me=pending and approved_by_me,
        can_cancel=can_cancel,
        action_url=action_url,
        decide_csrf=console.signer.form_token(bound_to, "decide"),
        cancel_csrf=console.signer.form_token(bound_to, "cancel"),
        notice=notice,
        **values,
    )


async def request_page(console: Console, request: Request) -> Response:
    visit = await console.visit(request)
    member = visit.member
    if member is None:
        return console.redirect("/signin", visit)
    found = await load(console, request.path_params["request_id"], member.account_id)
    if found is None:
        return console.error(visit, 404, "error.404")
    account = await run_in_threadpool(console.reads.account, member.account_id)
    return render_request(
        console,
        visit,
        found,
        actor_id=member.user_id,
        role=member.role,
        action_url=f"/requests/{found['request_id']}",
        bound_to=visit.session.sid,
        account=account,
    )


async def act(console: Console, request: Request) -> Response:
    """POST /requests/<id>/decide or /cancel, from a signed-in member."""
    visit = await console.visit(request)
    member = visit.member
    kind = request.path_params["action"]
    command = REQUEST_DECIDE if kind == "decide" else REQUEST_CANCEL
    request_id = request.path_params["request_id"][:64]
    if member is None:
        return await console.refuse(
            visit,
            401,
            "error.signin_needed",
            command=command,
            code=ErrorCode.FORBIDDEN,
            request_id=request_id,
        )
    read = await console.form(
        visit,
        ("csrf", "decision", "comment") if kind == "decide" else ("csrf", "reason"),
        bound_to=visit.session.sid,
        action=kind,
        command=command,
        request_id=request_id,
    )
    if isinstance(read, Response):
        return read
    fields, form_id = read
    found = await load(console, request_id, member.account_id)
    if found is None:  # another account's request, or none at all: 404 either way (C2)
        return await console.refuse(
            visit,
            404,
            "error.404",
            command=command,
            code=ErrorCode.NOT_FOUND,
            request_id=request_id,
        )
    return await run_action(
        console,
        visit,
        found,
        fields,
        kind,
        actor_id=member.user_id,
        role=member.role,
        channel=CHANNEL_WEB,
        key=message_id(CHANNEL_WEB, visit.session.sid, form_id, kind),
        page=f"/requests/{request_id}",
        bound_to=visit.session.sid,
    )


async def run_action(
    console: Console,
    visit: Visit,
    found: dict[str, Any],
    fields: dict[str, str],
    kind: str,
    *,
    actor_id: str,
    role: str | None,
    channel: str,
    key: str,
    page: str,
    bound_to: str,
) -> Response:
    """The decision or cancellation as the contract's command; then the request's page
    (its notice says what happened), or the page again with the refusal."""
    request_id = found["request_id"]
    body: dict[str, Any] = {"request_id": request_id, "actor_id": actor_id}
    if kind == "decide":
        decision = fields.get("decision", "")
        if decision not in DECISIONS:
            return await console.refuse(
                visit,
                400,
                "error.bad_form",
                command=REQUEST_DECIDE,
                code=ErrorCode.INVALID_MESSAGE,
                channel=channel,
                actor_id=actor_id,
                account_id=found["account_id"],
                request_id=request_id,
                problem="decision",
            )
        body["decision"] = decision
        comment = fields.get("comment", "").strip()
        if comment:
            body["comment"] = comment[:2000]
        routing_key, notice, key = REQUEST_DECIDE, NOTICE_OF[decision], f"{key}:{decision}"
    else:
        reason = fields.get("reason", "").strip()
        if reason:
            body["reason"] = reason[:2000]
        routing_key, notice = REQUEST_CANCEL, "cancelled"
    reply, duplicate = await console.command(routing_key, body, key, channel)
    if reply["ok"] and reply["result"]["request"]["state"] == PENDING and kind == "decide":
        notice = "approval_recorded"  # the first of two (R23)
    if reply["ok"]:
        return console.redirect(f"{page}?notice={'already' if duplicate else notice}", visit)
    fresh = await load(console, request_id, found["account_id"]) or found
    return render_request(
        console,
        visit,
        fresh,
        actor_id=actor_id,
        role=role,
        action_url=page,
        bound_to=bound_to,
        status=STATUS_OF_CODE.get(reply["error"]["code"], 422),
        problem=console.problem(reply),
        link_page=channel != CHANNEL_WEB,
        link_for=None,
    )
