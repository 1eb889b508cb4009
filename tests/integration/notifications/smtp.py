"""A real SMTP server for the tests (aiosmtpd), which can be stopped and started again on
the same port, refuse some recipients for good and others for a while."""

from __future__ import annotations

import threading
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

from tests.smtpd import LocalSmtpServer


class Inbox:
    """The aiosmtpd handler: keeps every accepted message, parsed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse: dict[str, str] = {}  # recipient -> a 5xx answer
        self.busy: dict[str, int] = {}  # recipient -> how many 451 answers before accepting
        self.pipelining = True  # announce PIPELINING (RFC 2920), as most servers do

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        with self.lock:
            if self.busy.get(address, 0) > 0:
                self.busy[address] -= 1
                return "451 4.3.2 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=default)
        with self.lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 2.0.0 accepted"

    def received(self) -> list[EmailMessage]:
        with self.lock:
            return list(self.messages)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.received() if address in str(m["To"])]


class SmtpServer(LocalSmtpServer):
    """aiosmtpd on 127.0.0.1; ``stop`` and ``start`` simulate an outage."""

    def __init__(self) -> None:
        self.inbox = Inbox()
        super().__init__(self.inbox)
