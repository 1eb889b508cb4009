"""Sign in: an email address in, a single-use link out through the notifier; the page
answers the same whether or not the address is known. Opening the link shows a button;
only pressing it (a POST) signs in and uses the link up (C1)."""

from __future__ import annotations

from datetime import timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from consumers.web.console import Console, Visit
from consumers.web.security import Session, new_session
from consumers.web.texts import translator
from policies.decision import ErrorCode
from workflow.console.reads import AccessLink
from workflow.console.signin import request_sign_in
from workflow.persistence.links import SIGN_IN

EVERY = timedelta(minutes=1)
"""One sign-in email per address a minute at most: the form cannot flood a mailbox."""
SIGN_IN_COMMAND = "console.sign_in"
SIGN_OUT_COMMAND = "console.sign_out"


async def home(console: Console, request: Request) -> Response:
    visit = await console.visit(request)
    return console.redirect("/subscription" if visit.member else "/signin", visit)


async def sign_in_page(console: Console, request: Request) -> Response:
    visit = await console.visit(request)
    return console.page(visit, "signin.html", title=_title(visit, "signin.title"))


async def ask_for_link(console: Console, request: Request) -> Response:
    visit = await console.visit(request)
    read = await console.form(
        visit,
        ("csrf", "email"),
        bound_to=visit.session.sid,
        action="signin",
        command=SIGN_IN_COMMAND,
    )
    if isinstance(read, Response):
        return read
    email = read[0].get("email", "").strip()
    if not 3 <= len(email) <= 254 or "@" not in email:
        return console.error(visit, 422, "error.bad_form", problem="an email address")
    now = console.clock()
    key = email.lower()
    last = console.sign_ins.get(key)
    if last is not None and now - last < EVERY:
        return console.error(visit, 429, "error.rate")
    console.sign_ins[key] = now
    if len(console.sign_ins) > 10_000:
        console.sign_ins = {k: v for k, v in console.sign_ins.items() if now - v < EVERY}
    await run_in_threadpool(request_sign_in, console.db, email, now)
    return console.page(
        visit, "signin_sent.html", email=email, title=_title(visit, "signin.sent.title")
    )


async def _link(console: Console, visit: Visit) -> AccessLink | Response:
    link = await run_in_threadpool(console.reads.link, visit.request.path_params["token"])
    if link is None or link.kind != SIGN_IN:
        return await console.refuse(
            visit, 404, "error.404", command=SIGN_IN_COMMAND, code=ErrorCode.NOT_FOUND
        )
    return link


async def link_page(console: Console, request: Request) -> Response:
    visit = await console.visit(request)
    link = await _link(console, visit)
    if isinstance(link, Response):
        return link
    member = await run_in_threadpool(console.reads.member, link.account_id, link.user_id)
    account = await run_in_threadpool(console.reads.account, link.account_id)
    usable = member is not None and account is not None and link.usable(console.clock())
    return _link_page(console, visit, usable, member=member, account=account)


def _link_page(console: Console, visit: Visit, usable: bool, **values: object) -> Response:
    return console.page(
        visit,
        "signin_link.html",
        status=200 if usable else 410,
        usable=usable,
        token=visit.request.path_params["token"],
        link_member=values.get("member"),
        link_account=values.get("account"),
        title=_title(visit, "signin.title"),
    )


async def use_link(console: Console, request: Request) -> Response:
    visit = await console.visit(request)
    link = await _link(console, visit)
    if isinstance(link, Response):
        return link
    read = await console.form(
        visit,
        ("csrf",),
        bound_to=visit.session.sid,
        action="signin-link",
        command=SIGN_IN_COMMAND,
        actor_id=link.user_id,
        account_id=link.account_id,
    )
    if isinstance(read, Response):
        return read
    member = await run_in_threadpool(console.reads.member, link.account_id, link.user_id)
    now = console.clock()
    if (
        member is None
        or not link.usable(now)
        or not await run_in_threadpool(console.reads.use_link, link.token_hash, now)
    ):
        return _link_page(console, visit, False)
    # A new session id on sign-in: a session fixed before cannot ride on this one.
    session = Session(new_session().sid, member.account_id, member.user_id)
    response = console.redirect("/subscription")
    console.set_session(response, session)
    return response


async def sign_out(console: Console, request: Request) -> Response:
    visit = await console.visit(request)
    read = await console.form(
        visit, ("csrf",), bound_to=visit.session.sid, action="signout", command=SIGN_OUT_COMMAND
    )
    if isinstance(read, Response):
        return read
    response = console.redirect("/signin")
    console.set_session(response, new_session())
    return response


def _title(visit: Visit, key: str) -> str:
    return translator(visit.locale)(key)
