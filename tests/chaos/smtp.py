"""A real SMTP server (aiosmtpd) on 127.0.0.1, in a process of its own, that counts what
it accepted and can go down.

Its own process, as a real server is: in the harness's process it shared the interpreter
lock with the load generator, and a mail's end of data waited 40 ms on average for its
``250`` (p99 267 ms, measured in the kill scenario), a server far slower than any real
one, whose slowness is the very interval in which a killed notifier's mail goes out
twice.

Going down happens in two steps, so the outage is a clean one: first every new mail
transaction is answered ``421`` (a temporary refusal), so that no mail is left half
way through DATA; half a second later the listener itself is closed, and connections
are refused until :meth:`MailSink.come_back`. (Cutting a session right after the
server stored a mail and before the client read the ``250`` would make a resend
legitimate; that SMTP ambiguity is not what these tests are about.)
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default
from multiprocessing.connection import Connection
from typing import Any

from tests.smtpd import LocalSmtpServer, free_port

_HEADERS = BytesHeaderParser(policy=default)

ANSWER_TIMEOUT = 30.0
"""Seconds the harness waits for the server process to answer a request."""


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
        self.received: list[tuple[bytes, float]] = []
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
        # Only kept here; read when asked for (the server answers a burst of mails at once).
        with self.lock:
            self.received.append((envelope.content, time.time()))
        return "250 2.0.0 accepted"

    def accepted(self) -> list[Accepted]:
        with self.lock:
            received = list(self.received)
        parsed = []
        for content, at in received:
            headers = _HEADERS.parsebytes(content)
            parsed.append(
                Accepted(
                    str(headers["Message-ID"]).strip(),
                    str(headers["X-Subreq-Notification-Id"]).strip(),
                    str(headers["To"]),
                    str(headers["Subject"]),
                    at,
                )
            )
        return parsed


class _Server(LocalSmtpServer):
    """The server itself, in the child process."""

    def __init__(self, port: int) -> None:
        self.handler = Handler()
        super().__init__(self.handler)
        self.port = port

    def go_down(self) -> None:
        self.handler.closing = True
        time.sleep(0.5)
        self.stop()

    def come_back(self) -> None:
        self.start()
        self.handler.closing = False

    def accepted(self) -> list[Accepted]:
        return self.handler.accepted()


def _serve(port: int, requests: Connection) -> None:
    """The child process: answer the harness's requests until it says stop or is gone."""
    server = _Server(port)
    server.start()
    requests.send("ready")
    try:
        while True:
            try:
                request = requests.recv()
            except EOFError:  # the harness died: so does its server
                return
            if request == "stop":
                requests.send("stopped")
                return
            requests.send(getattr(server, request)())
    finally:
        server.stop()


class MailSink:
    """aiosmtpd on a free local port, in a child process; ``go_down`` / ``come_back``
    make an outage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.outages: list[tuple[float, float]] = []
        self._process: multiprocessing.process.BaseProcess | None = None
        self._requests: Connection | None = None
        self._lock = threading.Lock()  # one request at a time over the pipe

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(self.port, theirs), name="chaos-smtp", daemon=True
        )
        self._process.start()
        theirs.close()
        self._requests = ours
        if self._ask(None) != "ready":
            raise RuntimeError("the SMTP server process did not start")

    def _ask(self, request: str | None) -> Any:
        """Send ``request`` (``None``: only wait for the next answer) and return the answer."""
        assert self._requests is not None, "the SMTP server is not started"
        with self._lock:
            if request is not None:
                self._requests.send(request)
            if not self._requests.poll(ANSWER_TIMEOUT):
                raise RuntimeError(f"the SMTP server process did not answer {request!r}")
            return self._requests.recv()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.is_alive():
                self._ask("stop")
        except (RuntimeError, OSError, EOFError):
            pass
        finally:
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
            if self._requests is not None:
                self._requests.close()
                self._requests = None

    def go_down(self) -> None:
        self._ask("go_down")
        self.outages.append((time.time(), 0.0))

    def come_back(self) -> None:
        self._ask("come_back")
        down, _ = self.outages[-1]
        self.outages[-1] = (down, time.time())

    def accepted(self) -> list[Accepted]:
        answer: list[Accepted] = self._ask("accepted")
        return answer
