"""Links in the emails the built-in notifier sends (console.md C3, C4).

A decider's email about a pending request (R16 submit, reminders, the call for a second
approval of R23, and any other template in ``DECIDER_TEMPLATES``) gets a decision link of
its own; a sign-in email gets its single-use sign-in link; every other email about a request
gets the request's page, which asks to sign in. Tokens are minted here, at delivery time,
and written into the mail only: the ``notification.requested`` event, the broker, the logs
and the metrics never see one. Links start with ``SUBREQ_PUBLIC_URL``, never with what a
request's ``Host`` said; without it ``Links`` is not built and emails carry no links.

The notifier calls ``Links.decorate`` once per email, after rendering it and before sending.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from workflow.console.tokens import new_token, token_hash
from workflow.contract.names import PENDING
from workflow.errors import TransientError
from workflow.notifications.deliveries import Notice
from workflow.notifications.texts import Email, render_date
from workflow.persistence.database import Database
from workflow.persistence.links import DECISION, SIGN_IN
from workflow.persistence.sqlstore import SqlStore

log = logging.getLogger(__name__)

DECIDER_TEMPLATES = frozenset(
    {
        "request_submitted",
        "request_reminder",
        "request_expiry_warning",
        "request_escalated",
        "request_approval_recorded",
    }
)
"""Emails that ask a decider to decide: they carry a decision link (when sent to one)."""
SIGN_IN_TEMPLATE = "sign_in"
SIGN_IN_TTL = timedelta(minutes=30)
DECIDERS = ("owner", "billing_admin")
HTML_MARK = "<!-- subreq:links -->"
"""Where the layout of HTML emails takes the links; before ``</body>`` without it."""
SIGNATURE = "\n-- \n"
BUTTON = (
    '<p style="margin:24px 0 8px 0;"><a href="{url}" style="display:inline-block;'
    "padding:10px 18px;background-color:#1d4ed8;color:#ffffff;text-decoration:none;"
    'border-radius:4px;font-weight:bold;">{label}</a></p>'
    '<p style="margin:0 0 8px 0;font-size:13px;color:#616e7c;">{hint}</p>'
)
"""The link in an HTML email: inline styles, as mail clients need."""

_WORDS = {
    "en": {
        DECISION: ("Review and decide", "This link is for you alone and works until {until}."),
        "review": ("View the request", "You may be asked to sign in."),
        SIGN_IN: ("Sign in", "The link works once, until {until}."),
    },
    "it": {
        DECISION: ("Esamina e decidi", "Questo link è solo per te e vale fino al {until}."),
        "review": ("Vedi la richiesta", "Potrebbe esserti chiesto di accedere."),
        SIGN_IN: ("Accedi", "Il link vale una volta sola, fino al {until}."),
    },
}


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Link:
    kind: str  # decision, review or sign_in
    url: str
    until: datetime | None = None


class Links:
    """Mints links and writes them into emails; one per notifier."""

    def __init__(
        self,
        db: Database,
        public_url: str,
        ttl: timedelta,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.public_url = public_url.rstrip("/")
        self.ttl = ttl
        self.clock = clock

    def decorate(self, notice: Notice, email: Email) -> Email:
        """The email with its link, or as it was when it needs none. A database that is away
        costs the link, not the email: it is sent without one (and says so in the log)."""
        try:
            link = self.link_for(notice)
        except TransientError as exc:
            log.warning("notification %s goes without a link: %s", notice.notification_id, exc)
            return email
        return email if link is None else with_link(email, link, notice.locale)

    def link_for(self, notice: Notice) -> Link | None:
        if notice.template == SIGN_IN_TEMPLATE:
            return self._sign_in(notice)
        if notice.request_id is None:
            return None
        review = Link("review", f"{self.public_url}/requests/{notice.request_id}")
        if notice.template not in DECIDER_TEMPLATES or notice.recipient_id is None:
            return review
        with self.db.store(lock=False) as store:
            request = store.request(notice.request_id)
            member = store.member(notice.account_id, notice.recipient_id)
            if (
                request is None
                or request["state"] != PENDING
                or request["account_id"] != notice.account_id
                or member is None
                or member["role"] not in DECIDERS
            ):
                return review
            now = self.clock()
            token = self._mint(store, DECISION, notice, now, now + self.ttl)
        return Link(DECISION, f"{self.public_url}/r/{token}", now + self.ttl)

    def _sign_in(self, notice: Notice) -> Link | None:
        if notice.recipient_id is None:
            return None
        with self.db.store(lock=False) as store:
            if store.member(notice.account_id, notice.recipient_id) is None:
                return None  # removed since they asked: no way in
            now = self.clock()
            token = self._mint(store, SIGN_IN, notice, now, now + SIGN_IN_TTL)
        return Link(SIGN_IN, f"{self.public_url}/signin/{token}", now + SIGN_IN_TTL)

    @staticmethod
    def _mint(store: SqlStore, kind: str, notice: Notice, now: datetime, until: datetime) -> str:
        token = new_token()
        store.links.insert(
            {
                "token_hash": token_hash(token),
                "kind": kind,
                "account_id": notice.account_id,
                "user_id": notice.recipient_id,
                "request_id": notice.request_id,
                "created_at": now,
                "expires_at": until,
                "used_at": None,
            }
        )
        return token


def with_link(email: Email, link: Link, locale: str) -> Email:
    """The link as a paragraph of the text part (before the signature) and a button of the
    HTML part."""
    words = _WORDS.get(locale, _WORDS["en"])
    label, hint = words[link.kind]
    if link.until is not None:
        hint = hint.format(until=render_date(link.until, locale))
    paragraph = f"{label}: {link.url}\n{hint}\n"
    text = email.text
    cut = text.find(SIGNATURE)
    text = f"{text}\n\n{paragraph}" if cut < 0 else f"{text[:cut]}\n\n{paragraph}{text[cut:]}"
    page = email.html
    if page:
        button = BUTTON.format(
            url=html.escape(link.url), label=html.escape(label), hint=html.escape(hint)
        )
        at = page.find(HTML_MARK)
        if at < 0:
            at = page.find("</body>")
        page = page + button if at < 0 else page[:at] + button + page[at:]
    return replace(email, text=text, html=page)
