"""Emails as bytes on the wire: building safe messages, and two ways to deliver them.

Messages are written out directly (see ``build_message``) from values cleaned here
first: a member's name or a subject with CR/LF or control characters becomes one line,
non-ASCII is RFC 2047-encoded, and an address that is not a plain ``local@domain`` is
refused before any server sees it, so no value can break a header or add one.

Failures are sorted into :class:`Transient` (the server is down, busy or says 4xx:
try again later) and :class:`Permanent` (5xx, an unusable address: trying again
cannot help).
"""

from __future__ import annotations

import binascii
import contextlib
import functools
import logging
import os
import random
import re
import smtplib
import ssl
import tempfile
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.headerregistry import Address
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Protocol

from workflow.errors import SubreqError
from workflow.notifications.mailconfig import SmtpServer

log = logging.getLogger(__name__)

HEADER_LIMIT = 300
"""Characters kept of a display name or subject; nobody reads further in a header."""


class DeliveryError(SubreqError):
    """Raised when a mail could not be handed over; ``reason`` is what gets recorded."""

    permanent = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Transient(DeliveryError):
    """Raised when trying again later may work: the server is unreachable, busy or
    answered 4xx."""


class Permanent(DeliveryError):
    """Raised when trying again cannot help: a 5xx answer, or an unusable address."""

    permanent = True


# --- building messages -----------------------------------------------------------------


def one_line(value: str, limit: int = HEADER_LIMIT) -> str:
    """Whitespace (CR and LF included) collapsed to single spaces, other control
    characters dropped: a header value that cannot start a new header."""
    if value.isascii() and value.isprintable():  # the usual case: nothing to drop
        return " ".join(value.split())[:limit]
    kept = "".join(
        ch for ch in value if not unicodedata.category(ch).startswith("C") or ch in "\t\r\n"
    )
    return " ".join(kept.split())[:limit]


_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def recipient(name: str, email: str) -> Address:
    """The ``To`` address, or :class:`Permanent` naming what is wrong with it.

    Only a dot-atom local part (ASCII, or any letters when the server accepts SMTPUTF8)
    and a host name (IDNA for non-ASCII) pass: quoted local parts, comments, several
    addresses or anything with spaces are refused rather than guessed at."""
    email = email.strip()
    if not email or email.count("@") != 1:
        raise Permanent(f"undeliverable address {email!r}: not one local@domain address")
    local, domain = email.split("@")
    ascii_local = local.isascii()
    if (
        not local
        or len(local) > 64
        or not (
            _LOCAL_PART.match(local)
            if ascii_local
            else all(ch.isalnum() or ch in ".-_+" for ch in local)
        )
    ):
        raise Permanent(f"undeliverable address {email!r}: unusable local part")
    try:
        ascii_domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        raise Permanent(f"undeliverable address {email!r}: unusable domain") from None
    labels = ascii_domain.split(".")
    if len(ascii_domain) > 253 or len(labels) < 2 or not all(_LABEL.match(x) for x in labels):
        raise Permanent(f"undeliverable address {email!r}: unusable domain")
    return Address(display_name=one_line(name), username=local, domain=ascii_domain)


def message_id(notification_id: str, sender: Address) -> str:
    """Stable per notification, so a resend after a crash is recognisable as the same mail."""
    token = re.sub(r"[^A-Za-z0-9._-]", "-", notification_id) or "notification"
    return f"<{token}@{sender.domain or 'subreq.invalid'}>"


@dataclass(frozen=True)
class Outgoing:
    """What a notification becomes before it is a MIME message."""

    notification_id: str
    to: Address
    subject: str
    text: str
    html: str
    locale: str
    template: str


@dataclass(frozen=True)
class Mail:
    """A message ready for the wire: its envelope and its bytes (CRLF line ends)."""

    message_id: str
    sender: str
    recipient: str
    data: bytes
    international: bool = False
    """An address is not ASCII: the server must accept SMTPUTF8."""

    def as_bytes(self) -> bytes:
        return self.data


@functools.lru_cache(maxsize=8)
def _date(second: datetime) -> str:
    """The ``Date`` header: the same for every mail of that second."""
    return format_datetime(second)


def build_message(mail: Outgoing, sender: Address, now: datetime) -> Mail:
    """multipart/alternative (text, then HTML; text alone without HTML) with the headers a
    person and a mail system expect, and ``Auto-Submitted`` so autoresponders stay quiet
    (RFC 3834).

    Written out directly rather than through ``email.message.EmailMessage``, whose header
    parsing and folding cost milliseconds per mail: every value here is one line already
    (``one_line``, ``recipient``), non-ASCII text is RFC 2047-encoded and the parts are
    quoted-printable, so the shape is fixed and the result parses back as it did."""
    mid = message_id(mail.notification_id, sender)
    headers = [
        f"From: {_address(sender)}",
        f"To: {_address(mail.to)}",
        f"Subject: {_encoded(one_line(mail.subject, 998 - len('Subject: ')), 'Subject')}",
        f"Date: {_date(now.replace(microsecond=0))}",
        f"Message-ID: {mid}",
        "Auto-Submitted: auto-generated",
        "X-Auto-Response-Suppress: All",
        f"X-Subreq-Notification-Id: {_encoded(one_line(mail.notification_id, 64), 'X')}",
        f"X-Subreq-Template: {_encoded(one_line(mail.template, 64), 'X')}",
        f"Content-Language: {_encoded(one_line(mail.locale, 16) or 'en', 'X')}",
        "MIME-Version: 1.0",
    ]
    text = _part("plain", mail.text)
    if mail.html:
        # No secret: a quoted-printable body never holds "==" (its "=" is always followed
        # by two hex digits or a line break), so no content can forge this line; the
        # kernel's randomness cost a system call per mail on the sender threads.
        boundary = f"==============={random.randrange(10**19):019d}=="
        body = (
            f"--{boundary}\r\n".encode()
            + text
            + f"\r\n--{boundary}\r\n".encode()
            + _part("html", mail.html)
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"')
        data = "\r\n".join(headers).encode() + b"\r\n\r\n" + body
    else:
        data = "\r\n".join(headers).encode() + b"\r\n" + text + b"\r\n"
    envelope = (sender.addr_spec, mail.to.addr_spec)
    return Mail(mid, *envelope, data, not all(a.isascii() for a in envelope))


def _address(address: Address) -> str:
    """``Name <local@domain>``, the name quoted or RFC 2047-encoded as it needs."""
    return formataddr((address.display_name, address.addr_spec), charset="utf-8")


def _encoded(value: str, name: str) -> str:
    """An unstructured header value: as is when ASCII, else RFC 2047 words, folded."""
    if value.isascii():
        return value
    return Header(value, "utf-8", header_name=name).encode(linesep="\r\n")


def _part(subtype: str, content: str) -> bytes:
    """A text part's headers and quoted-printable body (UTF-8, CRLF line ends)."""
    lines = content.replace("\r\n", "\n").replace("\r", "\n")
    if not lines.endswith("\n"):
        lines += "\n"
    body = binascii.b2a_qp(lines.replace("\n", "\r\n").encode(), istext=True)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode() + body.rstrip(b"\r\n")


# --- delivering them ---------------------------------------------------------------------


class Mailer(Protocol):
    """Hands a message over, or raises :class:`Transient` / :class:`Permanent`."""

    def send(self, mail: Mail) -> None: ...

    def close(self) -> None: ...


class SmtpMailer:
    """SMTP with the standard library; one connection reused while it stays busy, closed
    after ``idle_seconds`` and re-opened when the server dropped it meanwhile."""

    def __init__(self, server: SmtpServer, *, idle_seconds: float = 20.0) -> None:
        self.server = server
        self.idle_seconds = idle_seconds
        self._smtp: smtplib.SMTP | None = None
        self._last_used = 0.0

    def _connect(self) -> smtplib.SMTP:
        """A connection ready to send; every failure here is the server's or the
        configuration's, never the message's, so all of them are transient."""
        server = self.server
        try:
            smtp: smtplib.SMTP
            if server.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    server.host,
                    server.port,
                    timeout=server.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                smtp = smtplib.SMTP(server.host, server.port, timeout=server.timeout)
            try:
                smtp.ehlo()
                if server.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if server.username:
                    smtp.login(server.username, server.password or "")
            except BaseException:
                with contextlib.suppress(Exception):
                    smtp.close()
                raise
        except (smtplib.SMTPException, OSError) as exc:
            raise Transient(f"SMTP server {server.describe()}: {_describe(exc)}") from None
        return smtp

    def send(self, message: Mail) -> None:
        if self._smtp is not None and time.monotonic() - self._last_used > self.idle_seconds:
            self.close()
        reused = self._smtp is not None
        try:
            self._send(message)
        except smtplib.SMTPServerDisconnected:
            self.close()
            if not reused:
                raise Transient(f"SMTP server {self.server.describe()} disconnected") from None
            # The server closed an idle connection: one fresh try before it counts.
            try:
                self._send(message)
            except smtplib.SMTPServerDisconnected:
                self.close()
                raise Transient(f"SMTP server {self.server.describe()} disconnected") from None

    def _send(self, message: Mail) -> None:
        if self._smtp is None:
            self._smtp = self._connect()
        smtp = self._smtp
        try:
            if smtp.has_extn("pipelining"):
                _pipelined(smtp, message)
            else:
                options = ["SMTPUTF8"] if message.international else []
                smtp.sendmail(message.sender, [message.recipient], message.data, options)
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPRecipientsRefused as exc:
            self._reset()
            code, answer = next(iter(exc.recipients.values()), (0, b""))
            raise _by_code(code, f"recipient refused: {code} {_text(answer)}") from None
        except smtplib.SMTPNotSupportedError as exc:
            self._reset()
            raise Permanent(f"the server cannot take this message: {exc}") from None
        except smtplib.SMTPResponseException as exc:
            self._reset()
            raise _by_code(exc.smtp_code, f"{exc.smtp_code} {_text(exc.smtp_error)}") from None
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise Transient(f"SMTP server {self.server.describe()}: {_describe(exc)}") from None
        finally:
            self._last_used = time.monotonic()

    def _reset(self) -> None:
        """After a refusal the session is still good, but mid-transaction: RSET it."""
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            with contextlib.suppress(Exception):
                smtp.close()


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _pipelined(smtp: smtplib.SMTP, mail: Mail) -> None:
    """One mail in two round trips instead of four (RFC 2920, for servers that announce
    PIPELINING): MAIL, RCPT and DATA in one write, then the content. Refusals raise what
    ``smtplib.SMTP.sendmail`` raises for them, so they are sorted the same way."""
    options = ""
    if mail.international:
        if not smtp.has_extn("smtputf8"):
            raise smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
        options = " SMTPUTF8"
    smtp.send(
        f"MAIL FROM:<{mail.sender}>{options}\r\nRCPT TO:<{mail.recipient}>\r\nDATA\r\n".encode()
    )
    sender, rcpt, data = smtp.getreply(), smtp.getreply(), smtp.getreply()
    if data[0] == 354 and (sender[0] != 250 or rcpt[0] not in (250, 251)):
        # A server that took DATA although the envelope failed: end it empty (it has no
        # recipient to deliver to) before reporting the refusal.
        smtp.send(b".\r\n")
        smtp.getreply()
    if sender[0] != 250:
        raise smtplib.SMTPSenderRefused(sender[0], sender[1], mail.sender)
    if rcpt[0] not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({mail.recipient: rcpt})
    if data[0] != 354:
        raise smtplib.SMTPDataError(data[0], data[1])
    content = _LEADING_DOT.sub(b"..", mail.data)
    if not content.endswith(b"\r\n"):
        content += b"\r\n"
    smtp.send(content + b".\r\n")
    code, answer = smtp.getreply()
    if code != 250:
        raise smtplib.SMTPDataError(code, answer)


class FileMailer:
    """No SMTP server configured: each mail becomes ``<folder>/<notification>.eml``,
    written atomically (a resend replaces the file rather than adding one)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path_of(self, message: Mail) -> Path:
        token = message.message_id.strip("<>").split("@")[0]
        return self.folder / f"{token}.eml"

    def send(self, message: Mail) -> None:
        target = self.path_of(message)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(message.as_bytes())
                os.replace(temporary, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            raise Transient(f"cannot write {target}: {exc}") from None

    def close(self) -> None:
        pass


def make_mailer(smtp: SmtpServer | None, folder: Path) -> Mailer:
    return SmtpMailer(smtp) if smtp is not None else FileMailer(folder)


def _by_code(code: int, reason: str) -> DeliveryError:
    return Permanent(reason) if 500 <= code < 600 else Transient(reason)


def _text(answer: bytes | str) -> str:
    raw = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)
    return one_line(raw, 500)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    return one_line(str(exc), 500) or type(exc).__name__
