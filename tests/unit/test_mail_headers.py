"""Mail building and configuration: correct headers, no header injection, stable
Message-IDs, refusing unusable addresses, sorting SMTP failures, parsing SUBREQ_SMTP_URL."""

from __future__ import annotations

import smtplib
import socket
import unicodedata
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.mail import (
    HEADER_LIMIT,
    FileMailer,
    Mail,
    Outgoing,
    Permanent,
    SmtpMailer,
    Transient,
    build_message,
    message_id,
    one_line,
    recipient,
)
from workflow.errors import ConfigurationError
from workflow.notifications.mailconfig import SmtpServer, parse_mail_from, parse_smtp_url
from workflow.settings import load_settings

SENDER = parse_mail_from("subreq <no-reply@subreq.example>")
NOW = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def mail(name: str = "Olivia Owner", subject: str = "Hello", email: str = "o@acme.example") -> Mail:
    outgoing = Outgoing(
        "5d1e-uuid", recipient(name, email), subject, "text\n", "<p>html</p>", "it", "t"
    )
    return build_message(outgoing, SENDER, NOW)


def built(
    name: str = "Olivia Owner", subject: str = "Hello", email: str = "o@acme.example"
) -> EmailMessage:
    raw = mail(name, subject, email).as_bytes()
    parsed = message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_headers_a_person_and_a_mail_system_expect() -> None:
    message = built()
    assert str(message["From"]) == "subreq <no-reply@subreq.example>"
    assert str(message["To"]) == "Olivia Owner <o@acme.example>"
    assert str(message["Subject"]) == "Hello"
    assert message["Date"].datetime == NOW
    assert message["Message-ID"] == "<5d1e-uuid@subreq.example>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Content-Language"] == "it"
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]


def test_the_message_id_is_derived_from_the_notification() -> None:
    assert message_id("abc", SENDER) == message_id("abc", SENDER) == "<abc@subreq.example>"
    assert message_id("a b>\r\n<c", SENDER) == "<a-b----c@subreq.example>"


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: victim@evil.example",
        "Eve\nBcc: victim@evil.example",
        "Eve\rBcc: victim@evil.example",
        'Eve" <victim@evil.example>, "x',
        "Eve\x00\x1b[31m\u2028Bcc: victim@evil.example",
    ],
)
def test_a_name_cannot_add_a_header_or_a_recipient(name: str) -> None:
    message = built(name=name, subject=f"{name} asks")
    assert message["Bcc"] is None
    assert message["Cc"] is None
    assert [a.addr_spec for a in message["To"].addresses] == ["o@acme.example"]
    assert "\n" not in str(message["Subject"])
    assert "\n" not in message["To"].addresses[0].display_name


def test_non_ascii_names_and_subjects_are_encoded_and_come_back_intact() -> None:
    message = built(name="Zoë Ünïcode-Łukasz 佐藤", subject="È stata approvata: più licenze")
    assert message["To"].addresses[0].display_name == "Zoë Ünïcode-Łukasz 佐藤"
    assert str(message["Subject"]) == "È stata approvata: più licenze"
    raw = build_message(
        Outgoing("n", recipient("Zoë", "z@acme.example"), "Sì", "t", "", "it", "t"), SENDER, NOW
    ).as_bytes()
    assert raw.isascii()  # RFC 2047 and quoted-printable, nothing raw on the wire


@pytest.mark.parametrize(
    "email",
    [
        "",
        "no-at-sign",
        "two@@acme.example",
        "a b@acme.example",
        "weird<addr>@acme.example",
        '"quoted"@acme.example',
        "x@localhost",
        "x@-acme.example",
        "o@acme.example\r\nBcc: victim@evil.example",
        "o@acme.example, victim@evil.example",
    ],
)
def test_an_unusable_address_is_refused_for_good(email: str) -> None:
    with pytest.raises(Permanent, match="undeliverable address"):
        recipient("Olivia", email)


def test_an_international_domain_is_sent_as_idna() -> None:
    assert recipient("Jürgen", "j@bücher.example").domain == "xn--bcher-kva.example"


class FakeSmtp:
    """Enough of smtplib.SMTP to see how failures are sorted."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def has_extn(self, name: str) -> bool:
        return False

    def sendmail(self, *args: object) -> None:
        raise self.error

    def rset(self) -> None:
        pass

    def quit(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (smtplib.SMTPRecipientsRefused({"o@x": (550, b"no such user")}), Permanent, "550"),
        (smtplib.SMTPRecipientsRefused({"o@x": (450, b"mailbox busy")}), Transient, "450"),
        (smtplib.SMTPDataError(552, b"too big"), Permanent, r"552 too big"),
        (smtplib.SMTPSenderRefused(451, b"later", "me@x"), Transient, "451 later"),
        (smtplib.SMTPNotSupportedError("SMTPUTF8 needed"), Permanent, "SMTPUTF8"),
        (ConnectionResetError("reset"), Transient, "reset"),
    ],
)
def test_smtp_failures_are_sorted_into_retry_or_give_up(
    error: BaseException, kind: type[Exception], reason: str
) -> None:
    mailer = SmtpMailer(SmtpServer("127.0.0.1", 1))
    mailer._smtp = FakeSmtp(error)  # type: ignore[assignment]
    mailer._last_used = float("inf")
    with pytest.raises(kind, match=reason):
        mailer.send(mail())


class PipeliningSmtp(FakeSmtp):
    """A server announcing PIPELINING that answers from a script and records what came."""

    def __init__(self, replies: list[tuple[int, bytes]]) -> None:
        super().__init__(AssertionError("not used"))
        self.replies = replies
        self.written: list[bytes] = []

    def has_extn(self, name: str) -> bool:
        return name == "pipelining"

    def send(self, data: bytes) -> None:
        self.written.append(data)

    def getreply(self) -> tuple[int, bytes]:
        return self.replies.pop(0)


def pipelined(replies: list[tuple[int, bytes]], sent: Mail | None = None) -> PipeliningSmtp:
    mailer = SmtpMailer(SmtpServer("127.0.0.1", 1))
    server = PipeliningSmtp(replies)
    mailer._smtp = server  # type: ignore[assignment]
    mailer._last_used = float("inf")
    mailer.send(sent or mail())
    return server


def test_a_pipelining_server_gets_the_envelope_in_one_write_and_the_content_dot_stuffed() -> None:
    dotted = build_message(
        Outgoing("n", recipient("O", "o@acme.example"), "Hi", ".line\n..two\n", "", "en", "t"),
        SENDER,
        NOW,
    )
    server = pipelined([(250, b"ok"), (250, b"ok"), (354, b"go"), (250, b"queued")], dotted)
    envelope, content = server.written
    assert envelope == (
        b"MAIL FROM:<no-reply@subreq.example>\r\nRCPT TO:<o@acme.example>\r\nDATA\r\n"
    )
    assert content == dotted.as_bytes().replace(b"\r\n.", b"\r\n..") + b".\r\n"
    assert b"\r\n..line\r\n...two\r\n" in content
    assert server.replies == []


@pytest.mark.parametrize(
    ("replies", "kind", "reason"),
    [
        ([(250, b"ok"), (550, b"no such user"), (554, b"no valid recipients")], Permanent, "550"),
        ([(250, b"ok"), (451, b"greylisted"), (503, b"no recipients")], Transient, "451"),
        ([(421, b"busy"), (503, b"no mail"), (503, b"no mail")], Transient, "421 busy"),
        ([(250, b"ok"), (250, b"ok"), (354, b"go"), (552, b"too big")], Permanent, "552"),
    ],
)
def test_a_pipelining_server_s_refusals_are_sorted_as_the_others(
    replies: list[tuple[int, bytes]], kind: type[Exception], reason: str
) -> None:
    with pytest.raises(kind, match=reason):
        pipelined(replies)


def test_a_server_taking_data_after_a_refused_recipient_is_sorted_by_the_refusal() -> None:
    replies = [(250, b"ok"), (550, b"no"), (354, b"go"), (554, b"no recipients")]
    with pytest.raises(Permanent, match="550"):
        pipelined(replies)


def test_a_server_that_is_down_is_transient() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Transient, match=r"127\.0\.0\.1"):
        SmtpMailer(SmtpServer("127.0.0.1", port, timeout=2)).send(mail())


def test_without_smtp_mails_become_eml_files_named_after_the_notification(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path / "mail")
    mailer.send(mail())
    mailer.send(mail())  # a resend replaces the file
    [written] = (tmp_path / "mail").iterdir()
    assert written.name == "5d1e-uuid.eml"
    assert message_from_bytes(written.read_bytes(), policy=default)["To"] == (
        "Olivia Owner <o@acme.example>"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://localhost:1025", SmtpServer("localhost", 1025)),
        ("smtp://mail.example.com", SmtpServer("mail.example.com", 25)),
        (
            "smtp://u%40x:p%3Ass@mail.example.com:587?starttls=true",
            SmtpServer("mail.example.com", 587, "starttls", "u@x", "p:ss"),
        ),
        ("smtps://u:p@mail.example.com", SmtpServer("mail.example.com", 465, "tls", "u", "p")),
        ("smtp://h:25?timeout=5", SmtpServer("h", 25, timeout=5.0)),
    ],
)
def test_smtp_urls(url: str, expected: SmtpServer) -> None:
    assert parse_smtp_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://h",
        "smtp://",
        "smtp://h:99999",
        "smtp://h:x",
        "smtps://h?starttls=true",
        "smtp://h?starttls=maybe",
        "smtp://h?tls=1",
        "smtp://h/path",
    ],
)
def test_unusable_smtp_urls_name_the_variable(url: str) -> None:
    with pytest.raises(ConfigurationError, match="SUBREQ_SMTP_URL"):
        parse_smtp_url(url)


def test_the_password_never_appears_in_an_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_smtp_url("smtps://user:secret@h?starttls=true")
    assert "secret" not in str(caught.value)


def test_settings_refuse_a_bad_smtp_url_or_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBREQ_SMTP_URL", "smtp:/nope")
    with pytest.raises(ConfigurationError, match="SUBREQ_SMTP_URL"):
        load_settings()
    monkeypatch.setenv("SUBREQ_SMTP_URL", "")
    assert load_settings().smtp_url is None
    monkeypatch.setenv("SUBREQ_MAIL_FROM", "no address")
    with pytest.raises(ConfigurationError, match="SUBREQ_MAIL_FROM"):
        load_settings()


@pytest.mark.parametrize("lease", ["2s", "2999ms", "11m", "1h", "soon"])
def test_a_claim_lease_too_short_too_long_or_unreadable_is_refused(
    monkeypatch: pytest.MonkeyPatch, lease: str
) -> None:
    monkeypatch.setenv("SUBREQ_CLAIM_LEASE", lease)
    with pytest.raises(ConfigurationError, match="SUBREQ_CLAIM_LEASE"):
        load_settings()


def test_the_claim_lease_is_15_seconds_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUBREQ_CLAIM_LEASE", raising=False)
    assert load_settings().claim_lease == timedelta(seconds=15)
    monkeypatch.setenv("SUBREQ_CLAIM_LEASE", "3s")
    assert load_settings().claim_lease == timedelta(seconds=3)
    monkeypatch.setenv("SUBREQ_CLAIM_LEASE", "10m")
    assert load_settings().claim_lease == timedelta(minutes=10)


def test_content_that_looks_like_the_boundary_cannot_end_a_part() -> None:
    """The boundary needs no secret: quoted-printable turns every "=" of the content into
    "=3D", so a line of the content never reads as a boundary line."""
    raw = build_message(
        Outgoing(
            "n",
            recipient("O", "o@acme.example"),
            "Hi",
            "--===============0000000000000000001==\nstill text\n",
            "<p>--===============0000000000000000001==--</p>",
            "en",
            "t",
        ),
        SENDER,
        NOW,
    ).as_bytes()
    parsed = message_from_bytes(raw, policy=default)
    assert isinstance(parsed, EmailMessage)
    plain, html = (part.get_content() for part in parsed.iter_parts())
    assert plain.splitlines() == ["--===============0000000000000000001==", "still text"]
    assert "--===============0000000000000000001==--" in html
    assert b"\r\n--===============0000000000000000001==" not in raw


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80) | st.text(max_size=80))
def test_a_header_value_keeps_no_control_character_and_no_line_break(value: str) -> None:
    """The plain-ASCII shortcut and the general path agree: whitespace runs become one
    space, other control characters go (no value can start a new header)."""
    cleaned = one_line(value)
    assert not any(unicodedata.category(ch).startswith("C") for ch in cleaned)
    kept = "".join(
        ch for ch in value if not unicodedata.category(ch).startswith("C") or ch in "\t\r\n"
    )
    assert cleaned == " ".join(kept.split())[:HEADER_LIMIT]
