"""A real SMTP server (aiosmtpd) on 127.0.0.1 that counts what it accepted and can go down.

Going down happens in two steps, so the outage is a clean one: first every new mail
transaction is answered ``421`` (a temporary refusal), so that no mail is left half
way through DATA; half a second later the listener itself is closed, and connections
are refused until :meth:`MailSink.come_back`. (Cutting a session right after the
server stored a mail and before the client read the ``250`` would make a resend
legitimate; that SMTP ambiguity is not what these tests are about.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from email import message_from_bytes
from email.policy import default
from typing import Any

from tests.smtpd import LocalSmtpServer


@dataclass(frozen=True)
class Accepted:
    message_id: str
    notification_id: str
    """From the ``X-Subreq-Notification-Id`` header: which notification the mail is, told
    apart from its Message-ID (a resend must carry the same one)."""
    to: str
    subject: str
    at: float


class Handler:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: list[Accepted] = []
        self.closing = False
        self.refused = 0

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        if self.closing:
            with self.lock:
                self.refused += 1
            return "421 4.3.2 going down for maintenance"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=default)
        with self.lock:
            self.accepted.append(
                Accepted(
                    str(message["Message-ID"]).strip(),
                    str(message["X-Subreq-Notification-Id"]).strip(),
                    str(message["To"]),
                    str(message["Subject"]),
                    time.time(),
                )
            )
        return "250 2.0.0 accepted"


class MailSink(LocalSmtpServer):
    """aiosmtpd on a free local port; ``go_down`` / ``come_back`` make an outage."""

    def __init__(self) -> None:
        self.handler = Handler()
        super().__init__(self.handler)
        self.outages: list[tuple[float, float]] = []

    def go_down(self) -> None:
        self.handler.closing = True
        time.sleep(0.5)
        self.stop()
        self.outages.append((time.time(), 0.0))

    def come_back(self) -> None:
        self.start()
        self.handler.closing = False
        down, _ = self.outages[-1]
        self.outages[-1] = (down, time.time())

    def accepted(self) -> list[Accepted]:
        with self.handler.lock:
            return list(self.handler.accepted)
