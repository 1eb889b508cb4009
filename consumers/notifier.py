"""The email notifier: ``notification.requested`` events in, one email each out (R16-R18).

It consumes its own quorum queue (``subreq.notifications``). Broker I/O stays on
the connection's thread; claiming, rendering, SMTP and recording run one at a
time on a worker thread, and the verdict comes back through
``add_callback_threadsafe`` -- so heartbeats flow during a slow SMTP server.

A delivery is acknowledged only when its outcome is recorded: sent (with
``notification.sent`` in the outbox), already handled by someone else, or failed
for good (then a copy goes to ``subreq.notifications.dead`` with the reason in
``x-subreq-error`` first). A failure a retry may cure keeps the message in hand
and tries again with exponential backoff, the others going on meanwhile; after
``RetryPolicy.attempts`` attempts it is dead-lettered too. See
``workflow.notifications.deliveries`` for why a message is never sent twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from typing import Literal

from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import AMQPError
from pika.spec import Basic, BasicProperties

from consumers.amqp.connection import run_connected
from consumers.amqp.publishing import bury
from consumers.amqp.topology import declare_topology
from consumers.mail import DeliveryError, Mailer, Outgoing, Permanent, build_message, recipient
from consumers.metrics import NOTIFICATIONS
from workflow.contract.names import NOTIFICATIONS_DEAD_QUEUE, NOTIFICATIONS_QUEUE
from workflow.errors import TransientError
from workflow.notifications import deliveries
from workflow.notifications.deliveries import BadNotice, Claim, ClaimStatus, Notice, parse_notice
from workflow.notifications.render import Email, render_email
from workflow.persistence.database import Database

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

    tag: int
    properties: BasicProperties
    body: bytes
    due: float = 0.0
    token: str | None = None  # our last claim, so a retry may take it over at once
    unrecorded: Sent | None = None  # sent, but the "sent" commit failed: never resend
    database_failures: int = 0


@dataclass(frozen=True)
class Verdict:
    settle: Literal["ack", "later", "dead"]
    reason: str = ""
    delay: float = 0.0


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
    ) -> None:
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
        self.ready = threading.Event()
        self.sent = 0
        self.dead = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="subreq-mail")
        self._in_hand: list[InHand] = []
        self._in_flight: Future[Verdict] | None = None

    # --- connection life -------------------------------------------------------------

    def run(self) -> None:
        try:
            run_connected(
                self.url,
                name="subreq-notifier",
                stop=self.stop,
                session=self._session,
                after=self._drop_in_hand,
            )
        finally:
            self._executor.shutdown(wait=True)
            self.mailer.close()

    def _drop_in_hand(self) -> None:
        """Unacked messages of a dead channel come back from the broker; the delivery
        records make sure the ones already sent are not sent again."""
        if self._in_flight is not None:
            self._in_flight.result()
        self._in_flight = None
        self._in_hand.clear()
        self.ready.clear()

    def _session(self, connection: BlockingConnection) -> None:
        channel = connection.channel()
        declare_topology(channel)
        channel.basic_qos(prefetch_count=self.prefetch)
        dead = connection.channel()
        dead.confirm_delivery()
        tag = channel.basic_consume(NOTIFICATIONS_QUEUE, self._on_message)
        self.ready.set()
        log.info("delivering %s (prefetch %d)", NOTIFICATIONS_QUEUE, self.prefetch)
        while not self.stop.is_set():
            connection.process_data_events(time_limit=self._idle_time())
            self._dispatch(connection, channel, dead)
        channel.basic_cancel(tag)
        while self._in_flight is not None:  # let the mail in hand finish and settle
            connection.process_data_events(time_limit=0.01)
        connection.close()  # messages waiting for a retry go back to the queue

    def _on_message(
        self,
        _channel: BlockingChannel,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        self._in_hand.append(InHand(method.delivery_tag, properties, body))

    def _idle_time(self) -> float:
        """How long to wait for broker I/O: until the next retry is due, at most 0.1 s."""
        if self._in_flight is not None or not self._in_hand:
            return 0.1
        soonest = min(item.due for item in self._in_hand)
        return max(0.0, min(0.1, soonest - time.monotonic()))

    # --- one delivery at a time ------------------------------------------------------

    def _dispatch(
        self, connection: BlockingConnection, channel: BlockingChannel, dead: BlockingChannel
    ) -> None:
        if self._in_flight is not None or not self._in_hand:
            return
        item = min(self._in_hand, key=lambda x: x.due)
        if item.due > time.monotonic():
            return
        self._in_hand.remove(item)
        future = self._executor.submit(self._attempt, item)
        self._in_flight = future

        def finished(_: Future[Verdict]) -> None:
            with contextlib.suppress(AMQPError):
                connection.add_callback_threadsafe(
                    lambda: self._settle(channel, dead, item, future)
                )

        future.add_done_callback(finished)

    def _settle(
        self,
        channel: BlockingChannel,
        dead: BlockingChannel,
        item: InHand,
        future: Future[Verdict],
    ) -> None:
        """On the connection thread: acknowledge, keep for later, or dead-letter."""
        self._in_flight = None
        if not channel.is_open:
            return
        verdict = future.result()
        if verdict.settle == "later":
            item.due = time.monotonic() + verdict.delay
            self._in_hand.append(item)
            return
        if verdict.settle == "dead":
            self._bury(dead, item, verdict.reason)
            self.dead += 1
        channel.basic_ack(item.tag)

    def _attempt(self, item: InHand) -> Verdict:
        """On the worker thread. Never raises: whatever happens becomes a verdict."""
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
            notice = parse_notice(item.body)
        except BadNotice as exc:
            log.warning("notifier: unusable event %s: %s", item.properties.message_id, exc)
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

    @staticmethod
    def _bury(dead: BlockingChannel, item: InHand, reason: str) -> None:
        """A confirmed copy in the dead letters, original body and properties kept."""
        bury(dead, NOTIFICATIONS_DEAD_QUEUE, item.body, item.properties, reason)
