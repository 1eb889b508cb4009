"""What every page handler works with: the database's read models, the command service,
the signer, the catalog, the templates, and how a page, a refusal or an error is answered."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from consumers.web.forms import FormRefused, read_form
from consumers.web.security import SESSION_AGE, SESSION_COOKIE, Session, Signer, new_session
from consumers.web.texts import from_accept_language, pick, translator
from policies.decision import ErrorCode
from workflow.app.service import CommandService
from workflow.console.reads import Member, Reads
from workflow.console.refusals import audit_refusal
from workflow.contract.names import CATALOG_GET, CHANNEL_WEB, FINAL_STATES
from workflow.domain.catalog import Catalog
from workflow.notifications.texts import render_date, render_day, render_duration, render_money
from workflow.persistence.database import Database

log = logging.getLogger(__name__)

STATUS_OF_CODE = {
    "invalid_message": 422,
    "unknown_account": 404,
    "unknown_member": 403,
    "not_eligible": 409,
    "forbidden": 403,
    "out_of_scope": 422,
    "invalid_change": 422,
    "request_pending": 409,
    "not_found": 404,
    "invalid_state": 409,
}
DECIDERS = ("owner", "billing_admin")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Visit:
    """One request's session, member (when signed in) and language."""

    request: Request
    session: Session
    member: Member | None
    locale: str
    fresh_cookie: bool = False
    values: dict[str, Any] = field(default_factory=dict)


class Console:
    """One per process; pages are functions of (console, visit)."""

    def __init__(
        self,
        db: Database,
        service: CommandService,
        catalog: Catalog,
        secret: str,
        *,
        public_url: str | None,
        request_ttl: timedelta,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.service = service
        self.catalog = catalog
        self.reads = Reads(db)
        self.signer = Signer(secret)
        self.secure_cookie = bool(public_url and public_url.startswith("https://"))
        self.request_ttl = request_ttl
        self.clock = clock
        self.catalog_view: dict[str, Any] = service.handle(CATALOG_GET, b"{}").json()["result"][
            "catalog"
        ]
        self.env = Environment(
            loader=PackageLoader("consumers.web", "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.sign_ins: dict[str, datetime] = {}
        """When each address last asked for a sign-in link (one a minute at most)."""

    # --- who is asking ---------------------------------------------------------------

    async def visit(self, request: Request) -> Visit:
        session = self.signer.session(request.cookies.get(SESSION_COOKIE))
        fresh = session is None
        if session is None:
            session = new_session()
        member = None
        if session.signed_in:
            assert session.account_id is not None
            assert session.user_id is not None
            member = await run_in_threadpool(self.reads.member, session.account_id, session.user_id)
        locale = (
            pick(member.locale)
            if member
            else from_accept_language(request.headers.get("accept-language"))
        )
        return Visit(request, session, member, locale, fresh)

    # --- answers -----------------------------------------------------------------------

    def page(
        self, visit: Visit, template: str, *, status: int = 200, **values: Any
    ) -> HTMLResponse:
        t = translator(visit.locale)
        locale = visit.locale
        bound = values.pop("bound_to", visit.session.sid)

        def csrf(action: str) -> str:
            return self.signer.form_token(bound, action)

        context = {
            "t": t,
            "locale": locale,
            "member": visit.member,
            "account": None,
            "nav": None,
            "notice": None,
            "problem": None,
            "link_page": False,
            "csrf": csrf,
            "money": lambda amount, currency: render_money(amount, currency, locale),
            "date": lambda value: render_date(value, locale),
            "age": lambda at: render_duration((self.clock() - at).total_seconds(), locale),
            "outcome": lambda r: self.outcome(r, locale),
            "describe": lambda line: self.describe(line, locale),
            "product_name": self.product_name,
            "plan_name": self.plan_name,
            "price": lambda product, plan: self.price(product, plan, visit, locale),
            "title": t("app"),
            **values,
        }
        html = self.env.get_template(template).render(context)
        response = HTMLResponse(html, status_code=status)
        if visit.fresh_cookie:
            self.set_session(response, visit.session)
        return response

    def set_session(self, response: Response, session: Session) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            self.signer.cookie(session),
            max_age=SESSION_AGE,
            httponly=True,
            samesite="lax",
            secure=self.secure_cookie,
            path="/",
        )

    def redirect(self, url: str, visit: Visit | None = None) -> RedirectResponse:
        response = RedirectResponse(url, status_code=303)
        if visit is not None and visit.fresh_cookie:
            self.set_session(response, visit.session)
        return response

    def error(self, visit: Visit, status: int, key: str, **values: str) -> HTMLResponse:
        t = translator(visit.locale)
        return self.page(
            visit, "error.html", status=status, message=t(key, **values), title=t("error.title")
        )

    async def refuse_form(
        self, visit: Visit, refused: FormRefused, *, command: str, **audit: Any
    ) -> HTMLResponse:
        """:meth:`refuse` for a form that cannot be read: ``invalid_message``, its reason."""
        return await self.refuse(
            visit,
            refused.status,
            refused.key,
            command=command,
            code=ErrorCode.INVALID_MESSAGE,
            **audit,
            **refused.values,
        )

    async def refuse(
        self,
        visit: Visit,
        status: int,
        key: str,
        *,
        command: str,
        code: ErrorCode,
        channel: str = CHANNEL_WEB,
        actor_id: str | None = None,
        account_id: str | None = None,
        request_id: str | None = None,
        **values: str,
    ) -> HTMLResponse:
        """A 4xx page saying what went wrong, and the refusal in the audit log (R15)."""
        member = visit.member
        message = translator("en")(key, **values)
        try:
            await run_in_threadpool(
                audit_refusal,
                self.db,
                self.clock(),
                channel=channel,
                command=command,
                code=code,
                message=message,
                actor_id=actor_id or (member.user_id if member else None),
                account_id=account_id or (member.account_id if member else None),
                request_id=request_id,
            )
        except Exception:  # the refusal stands even when its audit row cannot be written
            log.exception("console: could not audit a refusal (%s)", command)
        return self.error(visit, status, key, **values)

    async def form(
        self,
        visit: Visit,
        fields: tuple[str, ...],
        *,
        bound_to: str,
        action: str,
        command: str,
        prefixes: tuple[str, ...] = (),
        **audit: Any,
    ) -> tuple[dict[str, str], str] | Response:
        """A POSTed form's fields and form id; or, for a body that is no such form or a
        CSRF token that is missing or not this session's (or link's) for this action, the
        audited refusal to answer with."""
        try:
            found = await read_form(visit.request, fields, prefixes)
        except FormRefused as refused:
            return await self.refuse_form(visit, refused, command=command, **audit)
        form_id = self.signer.check_form(found.get("csrf"), bound_to, action)
        if form_id is None:
            return await self.refuse(
                visit, 403, "error.csrf", command=command, code=ErrorCode.FORBIDDEN, **audit
            )
        return found, form_id

    # --- running a command -------------------------------------------------------------

    async def command(
        self, routing_key: str, body: Mapping[str, Any], message_id: str | None, channel: str
    ) -> tuple[dict[str, Any], bool]:
        """The contract's reply to one command run by the same service as AMQP's, and
        whether it was a repeat of one already processed (C6)."""
        outcome = await run_in_threadpool(
            lambda: self.service.handle(
                routing_key, orjson.dumps(dict(body)), message_id, channel=channel
            )
        )
        return outcome.json(), outcome.duplicate

    @staticmethod
    def problem(reply: Mapping[str, Any]) -> dict[str, Any]:
        error = reply["error"]
        details = [d.get("message") or d.get("reason") or "" for d in error.get("details", [])]
        return {
            "message": error["message"],
            "details": [d for d in details if d],
            "code": error["code"],
        }

    # --- words about the catalog and requests -----------------------------------------

    def product(self, product_id: str) -> dict[str, Any] | None:
        for product in self.catalog_view["products"]:
            if product["id"] == product_id:
                return dict(product)
        return None

    def product_name(self, product_id: str) -> str:
        found = self.product(product_id)
        return str(found["name"]) if found else product_id

    def plan_name(self, product_id: str, plan_id: str) -> str:
        found = self.product(product_id)
        for plan in found["plans"] if found else []:
            if plan["id"] == plan_id:
                return str(plan["name"])
        return plan_id

    def price(self, product_id: str, plan_id: str, visit: Visit, locale: str) -> str:
        account = visit.values.get("account_row")
        found = self.product(product_id)
        if not account or not found or not account.get("currency"):
            return ""
        t = translator(locale)
        period = "month" if account["billing_cycle"] == "monthly" else "year"
        for plan in found["plans"]:
            if plan["id"] == plan_id:
                amount = plan["prices"].get(account["currency"], {}).get(account["billing_cycle"])
                if amount is None:
                    return ""
                return (
                    f"{render_money(amount, account['currency'], locale)} {t('period.' + period)}"
                )
        return ""

    def describe(self, line: Mapping[str, Any], locale: str) -> str:
        """A summary line in the reader's language (the contract's ``description`` is
        English); the contract's own words for a line of a kind it does not know."""
        kind = (line.get("item") or {}).get("type")
        current, proposed = line.get("current"), line.get("proposed")
        if kind not in ("add_seats", "add_product", "upgrade_plan") or not proposed:
            return str(line.get("description", ""))
        product = proposed["product"]
        return translator(locale)(
            f"line.{kind}",
            product=self.product_name(product),
            plan=self.plan_name(product, proposed["plan"]),
            from_plan=self.plan_name(product, current["plan"]) if current else "",
            seats=proposed["seats"],
            added=proposed["seats"] - (current["seats"] if current else 0),
        )

    def outcome(self, request: Mapping[str, Any], locale: str) -> str:
        """ "Approved by Olivia Owner at 10:02 UTC on 5 January 2026"."""
        t = translator(locale)
        state = request["state"]
        if state not in FINAL_STATES:
            return ""
        last = request["history"][-1] if request["history"] else {}
        at = _parse(request.get("decided_at") or last.get("at"))
        when = (
            {"time": f"{at:%H:%M}", "day": render_day(at, locale)}
            if at
            else {"time": "", "day": ""}
        )
        if state == "expired":
            return t("outcome.expired", **when)
        if state == "voided":
            return t("outcome.voided", reason=last.get("reason") or "", **when)
        who_id = request.get("decided_by") or last.get("actor_id") or ""
        names = request.get("_names") or {}
        who = (
            names.get(who_id)
            or (request.get("requester_name") if who_id == request.get("requester_id") else None)
            or who_id
        )
        return t("outcome", state=t(f"state.{state}"), who=who, **when)

    def expires_at(self, request: Mapping[str, Any]) -> datetime | None:
        created = _parse(request["created_at"])
        return created + self.request_ttl if created else None


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
