"""The email notifier: ``notification.requested`` events in, one email each out (R16-R18).

It consumes its own quorum queue (``subreq.notifications``) on
``consumers.amqp.loop``: broker I/O stays on the connection's thread; claiming,
rendering, SMTP and recording run one at a time on a worker thread, so heartbeats
flow during a slow SMTP server.

A delivery is acknowledged only when its outcome is recorded: sent (with
``notification.sent`` in the outbox), already handled by someone else, or failed
for good (then a copy goes to ``subreq.notifications.dead`` with the reason in
``x-subreq-error`` first). A failure a retry may cure keeps the message in hand
and tries again with exponential backoff, the others going on meanwhile; after
``RetryPolicy.attempts`` attempts it is dead-lettered too. See
``workflow.notifications.deliveries`` for why a message is never sent twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from typing import Literal

from consumers.amqp.deliveries import Ack, Action, Bury, Delivery, Later
from consumers.amqp.loop import Apply, DeliveryLoop
from consumers.mail import DeliveryError, Mailer, Outgoing, Permanent, build_message, recipient
from consumers.metrics import NOTIFICATIONS
from workflow.contract.names import EVENTS_EXCHANGE, NOTIFICATIONS_DEAD_QUEUE, NOTIFICATIONS_QUEUE
from workflow.errors import TransientError
from workflow.notifications import deliveries
from workflow.notifications.deliveries import BadNotice, Claim, ClaimStatus, Notice, parse_notice
from workflow.notifications.links import Links
from workflow.notifications.texts import Email, render_email
from workflow.persistence.database import Database
from workflow.telemetry import SpanKind, carried, messaging, tracer

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts per notification and the waits between them: with the defaults an SMTP
    server may be away for about four minutes before anything is given up."""

    attempts: int = 10
    first: float = 1.0
    ceiling: float = 60.0

    def delay(self, attempt: int) -> float:
        return float(min(self.ceiling, self.first * 2 ** max(0, attempt - 1)))


@dataclass(frozen=True)
class Sent:
    """Handed to the SMTP server; what recording it needs."""

    notice: Notice
    token: str
    message_id: str


@dataclass
class InHand:
    """A delivery not yet settled, and what this process knows about it."""

    delivery: Delivery
    due: float = 0.0
    token: str | None = None  # our last claim, so a retry may take it over at once
    unrecorded: Sent | None = None  # sent, but the "sent" commit failed: never resend
    database_failures: int = 0


@dataclass(frozen=True)
class Verdict:
    settle: Literal["ack", "later", "dead"]
    reason: str = ""
    delay: float = 0.0


def settle_verdict(delivery: Delivery, verdict: Verdict) -> list[Action]:
    """What to tell the broker: an ack once the outcome is recorded, nothing yet for a
    retry, and for a notification given up a confirmed dead-letter copy before the ack."""
    if verdict.settle == "later":
        return [Later(verdict.delay)]
    if verdict.settle == "dead":
        return [Bury(NOTIFICATIONS_DEAD_QUEUE, delivery, verdict.reason), Ack(delivery.tag)]
    return [Ack(delivery.tag)]


class Notifier:
    """Delivers until ``stop`` is set, reconnecting to the broker with backoff."""

    def __init__(
        self,
        url: str,
        db: Database,
        mailer: Mailer,
        sender: Address,
        *,
        stop: threading.Event,
        on_commit: Callable[[], None] | None = None,
        prefetch: int = 20,
        retry: RetryPolicy | None = None,
        stale_after: timedelta = timedelta(minutes=5),
        clock: Callable[[], datetime] = utcnow,
        links: Links | None = None,
    ) -> None:
        self.links = links
        self.url = url
        self.db = db
        self.mailer = mailer
        self.sender = sender
        self.stop = stop
        self.on_commit = on_commit
        self.prefetch = prefetch
        self.retry = retry or RetryPolicy()
        self.stale_after = stale_after
        self.clock = clock
        self.sent = 0
        self.dead = 0
        self._loop = DeliveryLoop(
            url,
            self,
            name="subreq-notifier",
            queue=NOTIFICATIONS_QUEUE,
            prefetch=prefetch,
            stop=stop,
            work_thread="subreq-mail",
            poll=0.1,
            finish_held=False,  # what waits for a retry goes back to the queue
            announce=f"delivering {NOTIFICATIONS_QUEUE} (prefetch {prefetch})",
        )
        self.ready = self._loop.ready

    def run(self) -> None:
        try:
            self._loop.run()
        finally:
            self.mailer.close()

    # --- what the loop asks of it ----------------------------------------------------

    @staticmethod
    def hold(delivery: Delivery) -> InHand:
        return InHand(delivery)

    @staticmethod
    def take(held: list[InHand], _read: Callable[[], None]) -> InHand | None:
        """The delivery due soonest, once it is due: one at a time."""
        item = min(held, key=lambda x: x.due)
        if item.due > time.monotonic():
            return None
        held.remove(item)
        return item

    @staticmethod
    def due_in(held: list[InHand]) -> float:
        return min(item.due for item in held) - time.monotonic()

    def settle(
        self, item: InHand, result: Future[Verdict], held: list[InHand], apply: Apply
    ) -> None:
        """On the connection thread: acknowledge, keep for later, or dead-letter."""
        actions = settle_verdict(item.delivery, result.result())
        apply(actions)
        for action in actions:
            if isinstance(action, Later):
                item.due = time.monotonic() + action.delay
                held.append(item)
            elif isinstance(action, Bury):
                self.dead += 1

    # --- one delivery at a time ------------------------------------------------------

    def work(self, item: InHand) -> Verdict:
        """On the worker thread, in the trace of the command that asked for the email. Never
        raises: whatever happens becomes a verdict."""
        props = item.delivery.properties
        with tracer().start_as_current_span(
            f"process {NOTIFICATIONS_QUEUE}",
            context=carried(props.headers),
            kind=SpanKind.CONSUMER,
            attributes=messaging(
                "process", EVENTS_EXCHANGE, item.delivery.routing_key, props.message_id
            ),
        ):
            return self._work(item)

    def _work(self, item: InHand) -> Verdict:
        try:
            verdict = self._deliver(item)
        except TransientError as exc:  # the database: wait for it, the mail is not at fault
            item.database_failures += 1
            delay = min(30.0, 0.5 * 2 ** (item.database_failures - 1))
            log.warning("notifier: %s; trying again in %.1fs", exc, delay)
            return Verdict("later", str(exc), delay)
        except Exception as exc:
            log.exception("notifier: delivery failed unexpectedly")
            return Verdict("dead", f"internal error: {exc!r}"[:1000])
        item.database_failures = 0
        return verdict

    def _deliver(self, item: InHand) -> Verdict:
        if item.unrecorded is not None:
            return self._record(item, item.unrecorded)
        try:
            notice = parse_notice(item.delivery.body)
        except BadNotice as exc:
            log.warning("notifier: unusable event %s: %s", item.delivery.properties.message_id, exc)
            NOTIFICATIONS.labels("failed").inc()
            return Verdict("dead", f"not a notification.requested event: {exc}")
        claim = deliveries.claim(self.db, notice, self.clock(), self.stale_after, item.token)
        if claim.outcome in (ClaimStatus.SENT, ClaimStatus.FAILED):
            log.info("notification %s was %s already", notice.notification_id, claim.outcome.value)
            return Verdict("ack")
        if claim.outcome is ClaimStatus.BUSY:
            # Another notifier is sending it now; if that one died, its claim goes stale.
            assert claim.busy_until is not None
            wait = (claim.busy_until - self.clock()).total_seconds()
            return Verdict("later", "claimed by another notifier", min(5.0, max(0.5, wait)))
        assert claim.token is not None
        item.token = claim.token
        try:
            message_id = self._send(notice)
        except DeliveryError as exc:
            return self._failed(notice, claim, exc)
        except Exception as exc:  # a bug: record it rather than leave the claim behind
            log.exception("notification %s failed unexpectedly", notice.notification_id)
            reason = f"internal error: {exc!r}"[:1000]
            deliveries.mark_failed(self.db, notice, claim.token, self.clock(), reason)
            NOTIFICATIONS.labels("failed").inc()
            return Verdict("dead", reason)
        item.unrecorded = Sent(notice, claim.token, message_id)
        return self._record(item, item.unrecorded)

    def _send(self, notice: Notice) -> str:
        to = recipient(notice.name, notice.email)
        email = self._render(notice)
        if self.links is not None:  # decision and sign-in links: in the mail only (C3)
            email = self.links.decorate(notice, email)
        message = build_message(
            Outgoing(
                notice.notification_id,
                to,
                email.subject,
                email.text,
                email.html,
                notice.locale,
                notice.template,
            ),
            self.sender,
            self.clock(),
        )
        with tracer().start_as_current_span(
            "smtp send",
            kind=SpanKind.CLIENT,
            attributes={"messaging.message.id": notice.notification_id},
        ):
            self.mailer.send(message)
        return str(message["Message-ID"])

    @staticmethod
    def _render(notice: Notice) -> Email:
        """The templates again, with the HTML part; an event from a producer without a
        ``context`` is sent as its own subject and text."""
        if notice.context is None:
            if not notice.subject or not notice.text:
                raise Permanent("the event has neither a context nor a subject and text")
            return Email(notice.subject, notice.text, "")
        try:
            return render_email(notice.template, notice.locale, notice.context)
        except Exception as exc:
            raise Permanent(
                f"template {notice.template!r} ({notice.locale}) failed: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    def _failed(self, notice: Notice, claim: Claim, exc: DeliveryError) -> Verdict:
        assert claim.token is not None
        now = self.clock()
        if not exc.permanent and claim.attempt < self.retry.attempts:
            delay = self.retry.delay(claim.attempt)
            log.warning(
                "notification %s: %s; attempt %d of %d, next in %.1fs",
                notice.notification_id,
                exc.reason,
                claim.attempt,
                self.retry.attempts,
                delay,
            )
            deliveries.mark_retrying(self.db, notice, claim.token, now, exc.reason)
            NOTIFICATIONS.labels("retried").inc()
            return Verdict("later", exc.reason, delay)
        reason = (
            exc.reason if exc.permanent else f"gave up after {claim.attempt} attempts: {exc.reason}"
        )
        log.warning("notification %s failed: %s", notice.notification_id, reason)
        deliveries.mark_failed(self.db, notice, claim.token, now, reason)
        NOTIFICATIONS.labels("failed").inc()
        return Verdict("dead", reason)

    def _record(self, item: InHand, sent: Sent) -> Verdict:
        if deliveries.mark_sent(self.db, sent.notice, sent.token, self.clock(), sent.message_id):
            self.sent += 1
            NOTIFICATIONS.labels("sent").inc()
            if self.on_commit is not None:
                self.on_commit()
        item.unrecorded = None
        return Verdict("ack")
