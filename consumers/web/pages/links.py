"""The decision link ``/r/<token>``: the request's page for the decider it was emailed to,
without signing in (console.md, C3). Opening it changes nothing (C1); its own forms act,
as that decider, with the channel ``email_link``. Each command's ``message_id`` comes from
the link and the decision, so a double click, two tabs or a scanner that posts give one
effect (C6). The decision uses the link up (a first approval of two too, R23); after the
request's end a visit shows the outcome; an unknown, malformed or pruned token is 404."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from consumers.web.console import Console, Visit
from consumers.web.pages.requests import load, render_request, run_action
from consumers.web.security import message_id
from consumers.web.texts import pick, translator
from policies.decision import ErrorCode
from workflow.console.reads import AccessLink
from workflow.contract.names import CHANNEL_EMAIL_LINK, PENDING, REQUEST_CANCEL, REQUEST_DECIDE
from workflow.persistence.links import DECISION

LINK_COMMAND = "console.decision_link"


async def _link(console: Console, request: Request) -> tuple[Visit, AccessLink | None]:
    visit = await console.visit(request)
    link = await run_in_threadpool(console.reads.link, request.path_params["token"])
    if link is None or link.kind != DECISION or link.request_id is None:
        return visit, None
    member = await run_in_threadpool(console.reads.member, link.account_id, link.user_id)
    if member is not None:
        visit.locale = pick(member.locale)
    visit.member = None  # the link acts for its decider only, whoever is signed in
    visit.values["link_member"] = member
    return visit, link


async def _unknown(console: Console, visit: Visit) -> Response:
    """A malformed, unknown or pruned token: 404, audited."""
    return await console.refuse(
        visit,
        404,
        "error.404",
        command=LINK_COMMAND,
        code=ErrorCode.NOT_FOUND,
        channel=CHANNEL_EMAIL_LINK,
    )


async def link_page(console: Console, request: Request) -> Response:
    visit, link = await _link(console, request)
    if link is None:
        return await _unknown(console, visit)
    assert link.request_id is not None
    found = await load(console, link.request_id, link.account_id)
    if found is None:
        return console.error(visit, 404, "error.404")
    member = visit.values["link_member"]
    t = translator(visit.locale)
    usable = member is not None and link.usable(console.clock()) and found["state"] == PENDING
    approved = any(a["actor_id"] == link.user_id for a in found["approvals"])
    info = (
        t("link.for", name=member.name)
        if usable
        else (
            (t("link.approved") if approved else t("link.expired"))
            if found["state"] == PENDING
            else None
        )
    )
    account = await run_in_threadpool(console.reads.account, link.account_id)
    return render_request(
        console,
        visit,
        found,
        account=account,
        actor_id=link.user_id,
        role=member.role if member else None,
        action_url=f"/r/{request.path_params['token']}",
        bound_to=link.token_hash,
        actions=usable,
        link_page=True,
        link_for=info,
    )


async def act(console: Console, request: Request) -> Response:
    visit, link = await _link(console, request)
    kind = request.path_params["action"]
    if link is None:
        return await _unknown(console, visit)
    assert link.request_id is not None
    audit: dict[str, Any] = {
        "channel": CHANNEL_EMAIL_LINK,
        "actor_id": link.user_id,
        "account_id": link.account_id,
        "request_id": link.request_id,
    }
    read = await console.form(
        visit,
        ("csrf", "decision", "comment") if kind == "decide" else ("csrf", "reason"),
        bound_to=link.token_hash,
        action=kind,
        command=REQUEST_DECIDE if kind == "decide" else REQUEST_CANCEL,
        **audit,
    )
    if isinstance(read, Response):
        return read
    fields = read[0]
    page = f"/r/{request.path_params['token']}"
    found = await load(console, link.request_id, link.account_id)
    member = visit.values["link_member"]
    if found is None or member is None:
        return await console.refuse(
            visit, 404, "error.404", command=REQUEST_DECIDE, code=ErrorCode.NOT_FOUND, **audit
        )
    if found["state"] != PENDING or not link.usable(console.clock()):
        return console.redirect(page)  # the page shows the outcome, or that the link expired
    response = await run_action(
        console,
        visit,
        found,
        fields,
        kind,
        actor_id=link.user_id,
        role=member.role,
        channel=CHANNEL_EMAIL_LINK,
        key=message_id(CHANNEL_EMAIL_LINK, link.token_hash, "", kind),
        page=page,
        bound_to=link.token_hash,
    )
    if response.status_code == 303:  # it took effect: the link is used up (C3), a first
        # approval of two included (R23), which leaves the request pending
        await run_in_threadpool(console.reads.use_link, link.token_hash, console.clock())
    return response
