"""Where mail goes and whom it comes from: ``SUBREQ_SMTP_URL`` and ``SUBREQ_MAIL_FROM``.

Parsed once at start, so a typo stops the program with a line naming the variable
instead of dead-lettering every notification later.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address
from email.utils import parseaddr
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from workflow.errors import ConfigurationError

Security = Literal["none", "starttls", "tls"]
DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True)
class SmtpServer:
    """An SMTP server: ``smtps`` is TLS from the first byte, ``starttls`` upgrades a
    plain connection and refuses to go on without it."""

    host: str
    port: int
    security: Security = "none"
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0

    def describe(self) -> str:
        """For logs: never the password."""
        user = f"{self.username}@" if self.username else ""
        return f"{user}{self.host}:{self.port} ({self.security})"


def parse_smtp_url(url: str) -> SmtpServer:
    """``smtp://host:1025``, ``smtp://user:pass@host:587?starttls=true``,
    ``smtps://user:pass@host:465``; ``?timeout=10`` sets the socket timeout in seconds."""

    def bad(reason: str) -> ConfigurationError:
        shown = url.replace(f":{parts.password}@", ":***@") if parts.password else url
        return ConfigurationError(f"SUBREQ_SMTP_URL {shown!r}: {reason}")

    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PORTS:
        raise bad("the scheme must be smtp:// or smtps://")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise bad("the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise bad("no host (example: smtp://localhost:1025)")
    if parts.path not in ("", "/"):
        raise bad("an SMTP URL has no path")
    query = {key: values[-1].lower() for key, values in parse_qs(parts.query).items()}
    unknown = sorted(set(query) - {"starttls", "timeout"})
    if unknown:
        raise bad(f"unknown parameter {unknown[0]!r} (known: starttls, timeout)")
    security: Security = "tls" if parts.scheme == "smtps" else "none"
    if "starttls" in query:
        if query["starttls"] not in _TRUE + _FALSE:
            raise bad("starttls must be true or false")
        if query["starttls"] in _TRUE:
            if security == "tls":
                raise bad("smtps:// is TLS already; starttls is for smtp://")
            security = "starttls"
    timeout = 30.0
    if "timeout" in query:
        try:
            timeout = float(query["timeout"])
        except ValueError:
            raise bad("timeout must be a number of seconds") from None
        if timeout <= 0:
            raise bad("timeout must be positive")
    return SmtpServer(
        host=parts.hostname,
        port=port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        timeout=timeout,
    )


def parse_mail_from(value: str) -> Address:
    """``subreq <no-reply@example.com>`` or a bare address; one address, on one line."""
    if any(ch in value for ch in "\r\n"):
        raise ConfigurationError("SUBREQ_MAIL_FROM must be on one line")
    name, address = parseaddr(value)
    if "@" not in address or address.count("@") != 1:
        raise ConfigurationError(
            f"SUBREQ_MAIL_FROM {value!r} is not an address (example: subreq <no-reply@example.com>)"
        )
    local, domain = address.split("@")
    try:
        return Address(display_name=name, username=local, domain=domain)
    except ValueError as exc:
        raise ConfigurationError(f"SUBREQ_MAIL_FROM {value!r}: {exc}") from None
