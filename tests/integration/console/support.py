"""Helpers of the console tests: accounts and members, the emails a person got and the
links in them, and what the database holds (to show that nothing changed)."""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.integration.helpers import account, send, wait_until
from tests.integration.notifications.smtp import SmtpServer
from workflow.app.service import CommandService
from workflow.contract.names import NOTIFICATION_SENT
from workflow.persistence.database import Database
from workflow.persistence.tables import (
    access_links,
    audit_log,
    outbox,
    processed_commands,
    request_transitions,
    requests,
    subscription_products,
)

LINK = re.compile(r"https?://\S+")


def people(
    service: CommandService, account_id: str, *, locale: str = "en", **kwargs: Any
) -> dict[str, str]:
    """An online-assisted account with an owner (Olivia), an admin (Adam), an agent; the
    email address of each, by role."""
    assert send(service, "account.upsert", account(account_id, **kwargs))["ok"]
    found = {}
    for user, role, name in (
        ("owner", "owner", "Olivia Owner"),
        ("admin", "admin", "Adam Admin"),
        ("agent", "agent", "Agnes Agent"),
    ):
        email = f"{user}@{account_id}.example"
        reply = send(
            service,
            "member.upsert",
            {
                "account_id": account_id,
                "user_id": f"{account_id}-{user}",
                "name": name,
                "email": email,
                "role": role,
                "locale": locale,
            },
        )
        assert reply["ok"], reply
        found[role] = email
    return found


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def mails(
    smtp: SmtpServer, address: str, count: int = 1, *, subject: str = ""
) -> list[EmailMessage]:
    """The first ``count`` mails to ``address`` whose subject contains ``subject``, waiting
    for them."""

    def found() -> list[EmailMessage]:
        got = [m for m in smtp.inbox.to(address) if subject in str(m["Subject"])]
        return got if len(got) >= count else []

    return wait_until(found, timeout=20, what=f"{count} mail(s) to {address}")


def links_in(message: EmailMessage) -> list[str]:
    return LINK.findall(text_of(message))


def link_in(message: EmailMessage, path: str) -> str:
    found = [url for url in links_in(message) if f"/{path}/" in url]
    assert len(found) == 1, links_in(message)
    return found[0]


def counts(db: Database) -> dict[str, int]:
    """Rows of every table a state change writes. The outbox's ``notification.sent`` rows
    are left out: the notifier writes them as it finishes mails asked for earlier, at its
    own pace, whatever the console does."""
    tables = (requests, request_transitions, processed_commands, audit_log, subscription_products)
    with db.engine.connect() as conn:
        found = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in tables
        }
        found["outbox"] = conn.execute(
            select(func.count()).select_from(outbox).where(outbox.c.type != NOTIFICATION_SENT)
        ).scalar_one()
    return found


def state_of(db: Database, request_id: str) -> str:
    with db.engine.connect() as conn:
        return str(
            conn.execute(
                select(requests.c.state).where(requests.c.request_id == request_id)
            ).scalar_one()
        )


def history(db: Database, request_id: str) -> list[tuple[str, str | None, str | None]]:
    """(to, actor, channel) of each step, oldest first."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(
                request_transitions.c.to_state,
                request_transitions.c.actor_id,
                request_transitions.c.channel,
            )
            .where(request_transitions.c.request_id == request_id)
            .order_by(request_transitions.c.id)
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def audits(db: Database, **where: str) -> list[dict[str, Any]]:
    """Audit rows whose columns have the values given, oldest first."""
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(audit_log)
            .where(*(audit_log.c[name] == value for name, value in where.items()))
            .order_by(audit_log.c.id)
        ).mappings()
        return [dict(r) for r in rows]


def unused_links(db: Database) -> int:
    with db.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(access_links)
                .where(access_links.c.used_at.is_(None))
            ).scalar_one()
        )


def pending_id(db: Database, account_id: str) -> str:
    with db.engine.connect() as conn:
        return str(
            conn.execute(
                select(requests.c.request_id).where(
                    requests.c.account_id == account_id, requests.c.state == "pending"
                )
            ).scalar_one()
        )


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_in(html: str, form_action: str) -> str:
    """The CSRF token of the form posting to ``form_action`` on a page."""
    at = html.index(f'action="{form_action}"')
    found = CSRF.search(html, at)
    assert found is not None, form_action
    return found.group(1)


def signed_in(url: str, smtp: SmtpServer, email: str) -> httpx.Client:
    """A plain HTTP client signed in as ``email`` the way a person is: the sign-in form,
    the link in the mail, its button."""
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=10)
    page = client.get("/signin")
    before = len(smtp.inbox.to(email))
    sent = client.post("/signin", data={"csrf": csrf_in(page.text, "/signin"), "email": email})
    assert sent.status_code == 200, sent.text
    link = link_in(mails(smtp, email, before + 1)[-1], "signin")
    path = link.removeprefix(url)
    confirm = client.get(path)
    done = client.post(path, data={"csrf": csrf_in(confirm.text, path)})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/subscription"
    return client
