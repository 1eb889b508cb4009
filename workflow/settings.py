"""Configuration from ``SUBREQ_*`` environment variables, validated once at start."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from policies.timers import Timers
from workflow.errors import ConfigurationError
from workflow.notifications.mailconfig import parse_mail_from, parse_smtp_url

WEB_SECRET_BYTES = 32
"""The shortest ``SUBREQ_WEB_SECRET`` accepted: 256 bits for the signing key."""

CLAIM_LEASE_MIN, CLAIM_LEASE_MAX = timedelta(seconds=3), timedelta(minutes=10)
"""The ``SUBREQ_CLAIM_LEASE`` accepted."""

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(value: object) -> timedelta:
    """Parse ``30d``, ``3d``, ``2s``, ``1h30m``; a bare number is seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    text = str(value).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        seconds = float(text)
    else:
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"{value!r} is not a duration (examples: 30d, 3d, 12h, 2s, 1h30m)")
        seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"{value!r} must be longer than zero")
    return timedelta(seconds=seconds)


def parse_optional_duration(value: object) -> timedelta | None:
    """A duration, or ``None`` for an empty value (the variable present but blank)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return parse_duration(value)


def parse_duration_or_off(value: object) -> timedelta | None:
    """A duration, or ``None`` for ``0`` (``0s``, ``0d``...): turned off."""
    text = str(value).strip().lower()
    if not text:
        raise ValueError("is empty: give a duration such as 1d, or 0 to turn it off")
    if isinstance(value, str) and re.fullmatch(r"0+(\.0+)?(ms|s|m|h|d|w)?", text):
        return None
    return parse_duration(value)


def describe(delta: timedelta) -> str:
    """``30d``, ``3d 4h``, ``2s``: a duration in the settings' own units."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2]) or f"{delta.total_seconds():g}s"


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
OptionalDuration = Annotated[timedelta | None, BeforeValidator(parse_optional_duration)]
DurationOrOff = Annotated[timedelta | None, BeforeValidator(parse_duration_or_off)]


def amqp_addresses(value: str) -> list[str]:
    """The broker addresses of ``SUBREQ_AMQP_URL``: one AMQP URL, or several separated by
    commas (the nodes of one RabbitMQ cluster, tried in order), each checked on its own so
    the error says which one is wrong."""
    parts = [part.strip() for part in value.split(",")]
    for number, part in enumerate(parts, 1):
        which = f"address {number} of {len(parts)}" if len(parts) > 1 else "the URL"
        if not part:
            raise ValueError(f"{which} is empty (addresses are separated by single commas)")
        if not part.startswith(("amqp://", "amqps://")):
            raise ValueError(f"{which} must start with amqp:// or amqps://, got {part!r}")
        try:
            host, port = urlsplit(part).hostname, urlsplit(part).port
        except ValueError as exc:
            raise ValueError(f"{which} is not a usable AMQP URL: {exc}") from None
        if not host:
            raise ValueError(f"{which} names no host: {part!r}")
        del port  # read for its check: a port that is no number raises above
    return parts


class Settings(BaseSettings):
    """Names and defaults are those of the wire contract."""

    model_config = SettingsConfigDict(env_prefix="SUBREQ_", extra="ignore")

    amqp_url: str = "amqp://guest:guest@localhost:5672/%2F"
    database_url: str = "sqlite:///subreq.db"
    smtp_url: str | None = None
    request_ttl: Duration = timedelta(days=30)
    reminder_after: Duration = timedelta(days=3)
    reminder_every: OptionalDuration = None
    """R20: how far apart further reminders go; unset: the first one is the only one."""
    reminders_max: Annotated[int, Field(ge=1)] = 1
    """R20: reminders in all, the first one included."""
    expiry_warning: DurationOrOff = timedelta(days=1)
    """R21: how long before its expiry a request's people are warned; ``0``: never."""
    escalate_after: OptionalDuration = None
    """R22: how long after its submit a request goes to every decider; unset: never."""
    notify_billing_admins: bool = False
    catalog: Path | None = None
    dedupe_window: Duration = timedelta(minutes=10)
    metrics_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    """Prometheus endpoint of each worker; unset: no endpoint."""
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    mail_from: str = "subreq <no-reply@subreq.invalid>"
    mail_dir: Path = Path("subreq-mail")
    """Where mails go as ``.eml`` files when ``SUBREQ_SMTP_URL`` is unset."""
    smtp_connections: Annotated[int, Field(ge=1, le=64)] = 16
    """SMTP connections each notifier keeps busy in parallel: a relay that answers each mail
    after 50 ms takes about 20 mails a second per connection."""
    claim_lease: Duration = timedelta(seconds=15)
    """How long a notifier's claim on an email holds unless renewed: its living notifier
    renews it every third of it; a killed notifier's emails are sent by another one once
    it ends. Between 3 seconds and 10 minutes."""
    web_secret: SecretStr | None = None
    """Signs the console's sessions and forms; ``subreq web`` refuses to start without it."""
    web_port: Annotated[int, Field(ge=1, le=65535)] = 8080
    public_url: str | None = None
    """The console's address as people reach it; links in emails start with it (C4).
    Unset: emails carry no links."""
    link_ttl: Duration = timedelta(hours=72)
    """How long a decision link stays valid at most (C3)."""

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url(cls, value: str) -> str:
        amqp_addresses(value)
        return value

    @model_validator(mode="after")
    def _timers_agree(self) -> Settings:
        """Timers that could never fire are a mistake to point out, not to ignore."""
        problems = []
        ttl = describe(self.request_ttl)
        if self.reminders_max > 1 and self.reminder_every is None:
            problems.append(
                f"SUBREQ_REMINDERS_MAX: {self.reminders_max} reminders need "
                "SUBREQ_REMINDER_EVERY to say how far apart they go"
            )
        if self.reminder_every is not None and self.reminders_max == 1:
            problems.append(
                f"SUBREQ_REMINDER_EVERY: {describe(self.reminder_every)} repeats nothing while "
                "SUBREQ_REMINDERS_MAX is 1: set it to the number of reminders in all"
            )
        if self.expiry_warning is not None and self.expiry_warning >= self.request_ttl:
            default = "" if "expiry_warning" in self.model_fields_set else " (the default)"
            problems.append(
                f"SUBREQ_EXPIRY_WARNING: {describe(self.expiry_warning)}{default} is not "
                f"shorter than SUBREQ_REQUEST_TTL ({ttl}): set a shorter one, or 0 for none"
            )
        if self.escalate_after is not None and self.escalate_after >= self.request_ttl:
            problems.append(
                f"SUBREQ_ESCALATE_AFTER: {describe(self.escalate_after)} is not shorter than "
                f"SUBREQ_REQUEST_TTL ({ttl}): requests would expire first"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def timers(self) -> Timers:
        """The durations the sweeper works with (R14, R20-R22)."""
        return Timers(
            ttl=self.request_ttl,
            reminder_after=self.reminder_after,
            reminder_every=self.reminder_every,
            reminders_max=self.reminders_max,
            expiry_warning=self.expiry_warning,
            escalate_after=self.escalate_after,
        )

    @field_validator("web_secret")
    @classmethod
    def _web_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value().encode()) < WEB_SECRET_BYTES:
            raise ValueError(f"must be at least {WEB_SECRET_BYTES} bytes long")
        return value

    @field_validator("claim_lease")
    @classmethod
    def _claim_lease(cls, value: timedelta) -> timedelta:
        if not CLAIM_LEASE_MIN <= value <= CLAIM_LEASE_MAX:
            raise ValueError(
                f"{value.total_seconds():g}s is outside 3s to 10m: shorter, a transaction "
                "that waits for a lock loses the claims in hand; longer, a killed notifier's "
                "emails wait that long"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL such as https://subreq.example.com")
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r} must not have a query or a fragment")
        return value.strip().rstrip("/")

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None  # SUBREQ_SMTP_URL= (empty) means unset: write .eml files
        if value is not None:
            _check(parse_smtp_url, value)
        return value

    @field_validator("mail_from")
    @classmethod
    def _mail_from(cls, value: str) -> str:
        _check(parse_mail_from, value)
        return value


def _check(parse: Callable[[str], object], value: str) -> None:
    """A parser's ConfigurationError as the ValueError pydantic reports per variable."""
    try:
        parse(value)
    except ConfigurationError as exc:
        raise ValueError(str(exc).split(" ", 1)[1]) from None


def load_settings() -> Settings:
    """Settings from the environment, or one line per bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"SUBREQ_{str(err['loc'][0]).upper()}: {err['msg'].removeprefix('Value error, ')}"
            if err["loc"]
            else err["msg"].removeprefix("Value error, ")  # several settings: each names itself
            for err in exc.errors()
        )
        raise ConfigurationError(problems) from None
