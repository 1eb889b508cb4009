"""The email of one delivery: the one step between a claimed record and the SMTP server.

Everything a recipient reads is decided here (the templates rendered again with the HTML
part, the safe headers of ``consumers.mail.build_message``), so what an email needs beyond
the event's values has one place to go.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.headerregistry import Address

from consumers.mail import Mail, Outgoing, Permanent, build_message, recipient
from workflow.notifications.deliveries import Notice
from workflow.notifications.texts import Email, render_email

Decorate = Callable[[Notice, Email], Email]
"""What adds to a rendered email before it is sent: the console's links (C3)."""


def build_email(
    notice: Notice, sender: Address, now: datetime, decorate: Decorate | None = None
) -> Mail:
    """The MIME message for ``notice``, or :class:`Permanent` when it cannot be built (an
    unusable address, a template failing on its values): trying again cannot help."""
    to = recipient(notice.name, notice.email)
    email = render(notice)
    if decorate is not None:
        email = decorate(notice, email)
    return build_message(
        Outgoing(
            notice.notification_id,
            to,
            email.subject,
            email.text,
            email.html,
            notice.locale,
            notice.template,
        ),
        sender,
        now,
    )


def render(notice: Notice) -> Email:
    """The templates again, with the HTML part; a notice without a ``context`` is sent as
    its own subject and text."""
    if notice.context is None:
        if not notice.subject or not notice.text:
            raise Permanent("the notification has neither a context nor a subject and text")
        return Email(notice.subject, notice.text, "")
    try:
        return render_email(notice.template, notice.locale, notice.context)
    except Exception as exc:
        raise Permanent(
            f"template {notice.template!r} ({notice.locale}) failed: {type(exc).__name__}: {exc}"
        ) from None
