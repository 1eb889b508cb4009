"""Subscription: products, plans, seats, currency and cycle; for an admin without billing
permission the change form built from ``catalog.get``, whose summary is the contract's
``request.preview`` (live through ``static/console.js``, or posted by the plain form), and
*Submit request*, which becomes ``request.submit`` (R1, R5, R7-R11)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from consumers.web.console import STATUS_OF_CODE, Console, Visit
from consumers.web.forms import CHANGE_PREFIXES, FormRefused, change_form
from consumers.web.security import message_id
from consumers.web.texts import translator
from workflow.contract.names import CHANNEL_WEB, REQUEST_PREVIEW, REQUEST_SUBMIT

FIELDS = ("csrf", "action", "note")
CHANGE = "change"


async def _signed_in(console: Console, request: Request) -> tuple[Visit, dict[str, Any] | None]:
    visit = await console.visit(request)
    if visit.member is None:
        return visit, None
    account = await run_in_threadpool(console.reads.account, visit.member.account_id)
    visit.values["account_row"] = account
    return visit, account


def _mode(console: Console, visit: Visit, account: dict[str, Any]) -> tuple[str, str]:
    t = translator(visit.locale)
    assert visit.member is not None
    role = visit.member.role
    if role in ("owner", "billing_admin"):
        return "direct", ""
    if role != "admin":
        return "agent", ""
    if account["type"] != "sales_assisted":
        return "not_eligible", t("sub.self_service")
    if not account["allows_subscription_changes"]:
        return "not_eligible", t("sub.managed")
    if account["pending_request_id"]:
        return "pending", ""
    return "form", ""


def _addable(console: Console, account: dict[str, Any]) -> dict[str, list[str]]:
    owned = {p["product"] for p in account["products"]}
    return {
        p["id"]: [plan["id"] for plan in p["plans"]]
        for p in console.catalog_view["products"]
        if p["addable"] and p["id"] not in owned
    }


def _render(
    console: Console,
    visit: Visit,
    account: dict[str, Any],
    *,
    values: dict[str, str] | None = None,
    summary: dict[str, Any] | None = None,
    problem: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    mode, eligibility = _mode(console, visit, account)
    addable = _addable(console, account)

    def higher_plans(product: str, plan: str) -> list[dict[str, Any]]:
        found = console.product(product)
        plans = found["plans"] if found else []
        ids = [p["id"] for p in plans]
        return plans[ids.index(plan) + 1 :] if plan in ids else []

    return console.page(
        visit,
        "subscription.html",
        status=status,
        title=translator(visit.locale)("sub.title"),
        nav="subscription",
        account=account,
        mode=mode,
        eligibility=eligibility,
        addable=[console.product(p) for p in addable],
        higher_plans=higher_plans,
        values=values or {},
        summary=summary,
        problem=problem,
        form_csrf=console.signer.form_token(visit.session.sid, CHANGE),
    )


async def subscription_page(console: Console, request: Request) -> Response:
    visit, account = await _signed_in(console, request)
    if visit.member is None or account is None:
        return console.redirect("/signin", visit)
    return _render(console, visit, account)


async def _read_change(
    console: Console, request: Request, visit: Visit, account: dict[str, Any]
) -> tuple[dict[str, str], Any, str] | Response:
    """The form's fields, its change items and form id, or the refusal to answer."""
    read = await console.form(
        visit,
        FIELDS,
        bound_to=visit.session.sid,
        action=CHANGE,
        command=REQUEST_SUBMIT,
        prefixes=CHANGE_PREFIXES,
    )
    if isinstance(read, Response):
        return read
    fields, form_id = read
    owned = {p["product"]: p["plan"] for p in account["products"]}
    try:
        form = change_form(fields, owned, _addable(console, account))
    except FormRefused as refused:
        return await console.refuse_form(visit, refused, command=REQUEST_SUBMIT)
    return fields, form, form_id


async def _preview(console: Console, visit: Visit, changes: list[dict[str, Any]]) -> dict[str, Any]:
    assert visit.member is not None
    reply, _ = await console.command(
        REQUEST_PREVIEW,
        {
            "account_id": visit.member.account_id,
            "actor_id": visit.member.user_id,
            "changes": changes,
        },
        None,
        CHANNEL_WEB,
    )
    return reply


async def submit(console: Console, request: Request) -> Response:
    visit, account = await _signed_in(console, request)
    if visit.member is None or account is None:
        return console.redirect("/signin", visit)
    read = await _read_change(console, request, visit, account)
    if isinstance(read, Response):
        return read
    fields, form, form_id = read
    values = {k: v for k, v in fields.items() if k != "csrf"}
    if fields.get("action") != "submit":  # the plain form's "Update summary"
        if not form.changes:
            return _render(console, visit, account, values=values)
        reply = await _preview(console, visit, form.changes)
        if reply["ok"]:
            return _render(
                console, visit, account, values=values, summary=reply["result"]["summary"]
            )
        return _render(
            console,
            visit,
            account,
            values=values,
            problem=console.problem(reply),
            status=STATUS_OF_CODE.get(reply["error"]["code"], 422),
        )
    body: dict[str, Any] = {
        "account_id": visit.member.account_id,
        "actor_id": visit.member.user_id,
        "changes": form.changes,
    }
    if form.note:
        body["note"] = form.note
    reply, duplicate = await console.command(
        REQUEST_SUBMIT,
        body,
        message_id(CHANNEL_WEB, visit.session.sid, form_id, "submit"),
        CHANNEL_WEB,
    )
    if reply["ok"]:
        request_id = reply["result"]["request"]["request_id"]
        notice = "already" if duplicate else "submitted"
        return console.redirect(f"/requests/{request_id}?notice={notice}", visit)
    if duplicate:
        return console.error(visit, 409, "notice.already")
    fresh: dict[str, Any] | None = await run_in_threadpool(
        console.reads.account, visit.member.account_id
    )
    return _render(
        console,
        visit,
        fresh or account,
        values=values,
        problem=console.problem(reply),
        status=STATUS_OF_CODE.get(reply["error"]["code"], 422),
    )


async def preview(console: Console, request: Request) -> Response:
    """The summary alone, for the live form: the same ``request.preview`` as the plain one."""
    visit, account = await _signed_in(console, request)
    if visit.member is None or account is None:
        return console.error(visit, 401, "error.signin_needed")
    read = await _read_change(console, request, visit, account)
    if isinstance(read, Response):
        return read
    _, form, _ = read
    summary, problem, status = None, None, 200
    if form.changes:
        reply = await _preview(console, visit, form.changes)
        if reply["ok"]:
            summary = reply["result"]["summary"]
        else:
            problem, status = (
                console.problem(reply),
                STATUS_OF_CODE.get(reply["error"]["code"], 422),
            )
    return console.page(
        visit, "_summary.html", status=status, summary=summary, summary_problem=problem
    )
