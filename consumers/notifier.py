"""The email notifier: due delivery records in, one email each out (R16-R18).

It reads no broker queue. Commands write a ``pending`` delivery record beside each
``notification.requested`` event (which is still published for other consumers); the
notifier claims due records from the database and sends them over a pool of SMTP
connections, one thread each, each connection reused from mail to mail:

- one *exchange* thread (the caller of :meth:`Notifier.run`) talks to the database: in
  one transaction it records every outcome the senders finished since the last one and
  claims as many due records as the senders can take (``IN_HAND_PER_CONNECTION`` each),
  then waits for the next outcome or, idle, polls every ``poll`` seconds;
- ``connections`` sender threads build each email (``consumers.outgoing.build_email``) and
  hand it to their own SMTP connection.

The email window (the server said 250, the record does not say ``sent`` yet) is one
outcome's wait for the exchange in progress plus the next commit: milliseconds. A
process killed in it sends those mails again once their claims' lease (``stale_after``)
ends; claimed mails not yet handed over are sent once, after the lease.

A failure a retry may cure (server away, busy, 4xx) records ``retrying`` with an
exponential backoff; after ``RetryPolicy.attempts`` attempts, or at once for a
permanent one (5xx, an unusable address, a template error), the record says ``failed``
with the reason and a copy of the notification goes to ``subreq.notifications.dead`` with
the reason in ``x-subreq-error`` (confirmed by the broker, else tried again later). When
the database is away, outcomes stay in hand (a sent mail is never sent again for it) and
the exchange is tried again with backoff.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address

from consumers.amqp.letters import Letter, dead_letter
from consumers.mail import DeliveryError, Mailer
from consumers.metrics import NOTIFICATIONS
from consumers.outgoing import build_email
from workflow.errors import TransientError
from workflow.notifications import deliveries
from workflow.notifications.deliveries import Claimed, Outcome
from workflow.notifications.links import Links
from workflow.persistence.database import Database
from workflow.telemetry import SpanKind, carried, current_traceparent, tracer

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


STARTED = "notifier: delivering due notifications"
"""Logged once the notifier runs: it holds no broker consumer for anyone to count."""

REPORT_BATCH = 100
"""Dead-letter copies made per look."""

IN_HAND_PER_CONNECTION = 4
"""Claims held per SMTP connection. A claim's slot is free again only once its outcome is
recorded, one or two exchanges (a few milliseconds each) after the mail went out: with
fewer, connections wait for claims and the exchanges carry a mail or two each (measured:
two per connection gave half the rate of four to a local sink)."""


class Notifier:
    """Delivers until ``stop`` is set; then finishes and records what is in hand."""

    def __init__(
        self,
        url: str,
        db: Database,
        mailers: Callable[[], Mailer],
        sender: Address,
        *,
        stop: threading.Event,
        on_commit: Callable[[], None] | None = None,
        wake: threading.Event | None = None,
        connections: int = 8,
        retry: RetryPolicy | None = None,
        stale_after: timedelta = timedelta(minutes=5),
        poll: float = 0.2,
        clock: Callable[[], datetime] = utcnow,
        links: Links | None = None,
    ) -> None:
        self.links = links  # decision and sign-in links: minted here, in the mail only (C3)
        self.url = url
        self.db = db
        self.mailers = mailers
        self.sender = sender
        self.stop = stop
        self.on_commit = on_commit
        self.wake = wake or threading.Event()
        self.connections = connections
        self.retry = retry or RetryPolicy()
        self.stale_after = stale_after
        self.poll = poll
        self.clock = clock
        self.sent = 0
        self.dead = 0
        self.ready = threading.Event()
        self._work: queue.SimpleQueue[Claimed | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._unreported = True  # at start: failures an earlier process could not report

    # --- the exchange thread ---------------------------------------------------------

    def run(self) -> None:
        senders = [
            threading.Thread(target=self._sender, name=f"subreq-mail-{n}", daemon=True)
            for n in range(self.connections)
        ]
        for thread in senders:
            thread.start()
        log.info("%s over %d connections", STARTED, self.connections)
        self.ready.set()
        try:
            self._exchange_until_stopped()
        finally:
            for _ in senders:
                self._work.put(None)
            for thread in senders:
                thread.join()

    def _exchange_until_stopped(self) -> None:
        capacity = IN_HAND_PER_CONNECTION * self.connections
        in_hand = 0
        outcomes: list[Outcome] = []
        failures = 0
        next_poll = next_report = 0.0
        while True:
            stopping = self.stop.is_set()
            if stopping and in_hand == 0 and not outcomes:
                break
            if stopping and failures:  # the database is away: what is in hand stays stranded
                log.warning("notifier: stopping with %d outcomes unrecorded", len(outcomes))
                break
            want = 0 if stopping else capacity - in_hand
            polling = want > 0 and time.monotonic() >= next_poll
            if outcomes or polling:
                try:
                    done = deliveries.exchange(
                        self.db,
                        outcomes,
                        self.clock(),
                        want=want if polling else 0,
                        lease=self.stale_after,
                    )
                except Exception as exc:  # outcomes stay in hand: a sent mail is never resent
                    failures += 1
                    delay = min(30.0, 0.5 * 2 ** (failures - 1))
                    if isinstance(exc, TransientError):
                        log.warning("notifier: %s; trying again in %.1fs", exc, delay)
                    else:
                        log.exception("notifier: recording failed unexpectedly")
                    self.stop.wait(delay)
                    continue
                failures = 0
                in_hand += len(done.claimed) - len(outcomes)
                outcomes = []
                self._settled(done)
                for claimed in done.claimed:
                    self._work.put(claimed)
                if polling and len(done.claimed) < want:  # nothing more due now: poll later
                    next_poll = time.monotonic() + self.poll
            if self._unreported and not stopping and time.monotonic() >= next_report:
                self._report_failures()
                next_report = time.monotonic() + self.poll
            more = in_hand < capacity and not stopping
            timeout = max(0.0, next_poll - time.monotonic()) if more else self.poll
            if self._wait(outcomes, timeout):
                next_poll = 0.0  # a commit in this process may have asked for emails

    def _wait(self, outcomes: list[Outcome], timeout: float) -> bool:
        """Until an outcome is in (then take every other one already in), a commit of this
        process asks for a look (then ``True``), ``stop``, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                outcomes.append(self._done.get(timeout=max(0.0, min(0.05, timeout))))
                break
            except queue.Empty:
                if self.wake.is_set() or self.stop.is_set():
                    break
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    break
        while True:
            try:
                outcomes.append(self._done.get_nowait())
            except queue.Empty:
                break
        woken = self.wake.is_set()
        self.wake.clear()
        return woken

    def _settled(self, done: deliveries.Exchange) -> None:
        sent = failed = 0
        for outcome in done.recorded:
            if outcome.status == "sent":
                sent += 1
            elif outcome.status == "failed":
                failed += 1
            NOTIFICATIONS.labels(outcome.status.replace("retrying", "retried")).inc()
        for outcome in done.lost:
            log.warning(
                "notification %s: the claim was taken over before its %s was recorded",
                outcome.claimed.notice.notification_id,
                outcome.status,
            )
        self.sent += sent
        if failed:
            self._unreported = True
        if sent and self.on_commit is not None:
            self.on_commit()

    def _report_failures(self) -> None:
        """A confirmed copy in ``subreq.notifications.dead`` of each notification given up,
        then the record says so; with the broker away, tried again at the next look."""
        try:
            letters = deliveries.unreported_failures(self.db, REPORT_BATCH)
        except TransientError as exc:
            log.warning("notifier: cannot read failures to dead-letter: %s", exc)
            return
        if not letters:
            self._unreported = False
            return
        try:
            reported = dead_letter(
                self.url,
                [Letter(n.notification_id, n.event_id, body, why) for n, body, why in letters],
            )
        except Exception as exc:  # the broker: the records keep them due for a copy
            log.warning("notifier: dead-lettering %d notifications failed: %s", len(letters), exc)
            return
        try:
            deliveries.mark_reported(self.db, reported)
        except TransientError as exc:
            log.warning("notifier: %s; those dead letters may be copied twice", exc)
            return
        self.dead += len(reported)
        self._unreported = len(reported) < len(letters) or len(letters) >= REPORT_BATCH

    # --- the sender threads -------------------------------------------------------------

    def _sender(self) -> None:
        mailer = self.mailers()
        try:
            while (claimed := self._work.get()) is not None:
                self._done.put(self.attempt(claimed, mailer))
        finally:
            mailer.close()

    def attempt(self, claimed: Claimed, mailer: Mailer) -> Outcome:
        """Build and send one claimed notification, in the trace of the command that asked
        for it. Never raises: whatever happens becomes an outcome."""
        with tracer().start_as_current_span(
            "send notification",
            context=carried({"traceparent": claimed.traceparent}),
            kind=SpanKind.INTERNAL,
            attributes={"messaging.message.id": claimed.notice.notification_id},
        ):
            return self._attempt(claimed, mailer)

    def _attempt(self, claimed: Claimed, mailer: Mailer) -> Outcome:
        notice = claimed.notice
        now = self.clock()
        if now >= claimed.lease_until - self.stale_after / 10:
            # Waited too long in hand: another notifier may take it over now. Not sending
            # it keeps it once; the lease ends and it is claimed again.
            return Outcome(claimed, "retrying", now, error="claim lease ran out", due_at=now)
        try:
            message = build_email(
                notice, self.sender, now, self.links.decorate if self.links else None
            )
            with tracer().start_as_current_span(
                "smtp send",
                kind=SpanKind.CLIENT,
                attributes={"messaging.message.id": notice.notification_id},
            ):
                mailer.send(message)
        except DeliveryError as exc:
            return self._failed(claimed, exc)
        except Exception as exc:  # a bug: record it rather than leave the claim behind
            log.exception("notification %s failed unexpectedly", notice.notification_id)
            return Outcome(claimed, "failed", self.clock(), error=f"internal error: {exc!r}")
        return Outcome(
            claimed,
            "sent",
            self.clock(),
            message_id=message.message_id,
            traceparent=current_traceparent(),
        )

    def _failed(self, claimed: Claimed, exc: DeliveryError) -> Outcome:
        notice, attempt, now = claimed.notice, claimed.attempt, self.clock()
        if not exc.permanent and attempt < self.retry.attempts:
            delay = self.retry.delay(attempt)
            log.warning(
                "notification %s: %s; attempt %d of %d, next in %.1fs",
                notice.notification_id,
                exc.reason,
                attempt,
                self.retry.attempts,
                delay,
            )
            return Outcome(
                claimed, "retrying", now, error=exc.reason, due_at=now + timedelta(seconds=delay)
            )
        reason = exc.reason if exc.permanent else f"gave up after {attempt} attempts: {exc.reason}"
        log.warning("notification %s failed: %s", notice.notification_id, reason)
        return Outcome(claimed, "failed", now, error=reason)
