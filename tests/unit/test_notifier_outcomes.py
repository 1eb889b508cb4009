"""What the notifier makes of one claimed notification, without a database or a server:
sent with its Message-ID, retried with backoff, given up with the reason, or left alone
when its claim's lease is about to end."""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default

import pytest

from consumers.mail import DeliveryError, Mail, Permanent, Transient
from consumers.notifier import Notifier, RetryPolicy
from workflow.contract.examples import EVENT_EXAMPLES
from workflow.notifications.deliveries import Claimed, Notice
from workflow.notifications.mailconfig import parse_mail_from
from workflow.persistence.database import Database

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


class FakeMailer:
    def __init__(self, error: DeliveryError | None = None) -> None:
        self.error = error
        self.sent: list[Mail] = []

    def send(self, message: Mail) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(message)

    def close(self) -> None:
        pass


def notifier(now: datetime = NOW) -> Notifier:
    return Notifier(
        "amqp://unused",
        Database("sqlite://"),
        FakeMailer,
        parse_mail_from("subreq <no-reply@subreq.invalid>"),
        stop=threading.Event(),
        retry=RetryPolicy(attempts=3, first=2.0, ceiling=60.0),
        lease=LEASE,
        clock=lambda: now,
    )


def claimed(
    attempt: int = 1, *, context: object = "example", until: datetime = NOW + LEASE
) -> Claimed:
    data = copy.deepcopy(EVENT_EXAMPLES["notification.requested"]["data"])
    notice = Notice(
        notification_id="n-1",
        event_id="e-1",
        account_id="acme",
        request_id="r-1",
        template=data["template"],
        locale="en",
        recipient_id="u",
        email="o@acme.example",
        name="Olivia",
        subject=data["subject"],
        text="",
        context=data["context"] if context == "example" else context,  # type: ignore[arg-type]
    )
    return Claimed(notice, "token", attempt, until)


def test_a_sent_mail_carries_its_stable_message_id() -> None:
    mailer = FakeMailer()
    outcome = notifier().attempt(claimed(), mailer)
    assert (outcome.status, outcome.message_id) == ("sent", "<n-1@subreq.invalid>")
    [sent] = mailer.sent
    assert (sent.recipient, sent.message_id) == ("o@acme.example", "<n-1@subreq.invalid>")
    message = message_from_bytes(sent.as_bytes(), policy=default)
    assert message["Message-ID"] == "<n-1@subreq.invalid>"
    assert message["To"] == "Olivia <o@acme.example>"
    assert message.get_content_type() == "multipart/alternative"


def test_a_transient_failure_is_retried_after_the_policy_s_delay() -> None:
    outcome = notifier().attempt(claimed(2), FakeMailer(Transient("451 busy")))
    assert (outcome.status, outcome.error) == ("retrying", "451 busy")
    assert outcome.due_at == NOW + timedelta(seconds=4)


def test_the_last_attempt_and_a_permanent_failure_give_up_with_the_reason() -> None:
    last = notifier().attempt(claimed(3), FakeMailer(Transient("451 busy")))
    assert (last.status, last.error) == ("failed", "gave up after 3 attempts: 451 busy")
    refused = notifier().attempt(claimed(1), FakeMailer(Permanent("550 no such user")))
    assert (refused.status, refused.error) == ("failed", "550 no such user")


@pytest.mark.parametrize(
    ("context", "reason"),
    [({"lines": []}, "template 'request_submitted'"), (None, "neither a context")],
)
def test_a_notification_that_cannot_be_built_fails_for_good(context: object, reason: str) -> None:
    mailer = FakeMailer()
    outcome = notifier().attempt(claimed(context=context), mailer)
    assert outcome.status == "failed"
    assert reason in outcome.error
    assert mailer.sent == []


def test_a_claim_about_to_lapse_is_not_sent() -> None:
    mailer = FakeMailer()
    outcome = notifier().attempt(claimed(until=NOW + LEASE / 20), mailer)
    assert outcome.status == "retrying"
    assert outcome.due_at == NOW
    assert mailer.sent == []
