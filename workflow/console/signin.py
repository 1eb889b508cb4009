"""Asking for a sign-in link (console.md "Sign in"): one ``notification.requested`` event
per membership of the address, for the built-in notifier, which adds the single-use link
to the email it sends (the event's text carries none, C3). An unknown address asks for
nothing, and the caller answers the same either way."""

from __future__ import annotations

from datetime import datetime

from workflow.contract.names import NOTIFICATION_REQUESTED
from workflow.domain.ids import new_id
from workflow.notifications.links import SIGN_IN_TEMPLATE
from workflow.notifications.texts import pick_locale, render_email
from workflow.persistence.database import Database


def request_sign_in(db: Database, email: str, now: datetime) -> int:
    """How many sign-in emails were asked for (0 for an address no member has)."""
    with db.store(lock=False) as store:
        members = store.links.members_by_email(email.strip())
        for member in members:
            account = store.account(member["account_id"])
            name = account["name"] if account else member["account_id"]
            locale = pick_locale(member["locale"], SIGN_IN_TEMPLATE)
            context = {"recipient": member["name"], "account": name, "at": now.isoformat()}
            mail = render_email(SIGN_IN_TEMPLATE, locale, context, html=False)
            store.add_event(
                NOTIFICATION_REQUESTED,
                now,
                member["account_id"],
                {
                    "notification_id": new_id(),
                    "template": SIGN_IN_TEMPLATE,
                    "locale": locale,
                    "recipient": {
                        "user_id": member["user_id"],
                        "email": member["email"],
                        "name": member["name"],
                    },
                    "subject": mail.subject,
                    "text": mail.text,
                    "context": context,
                },
            )
        return len(members)
