"""The email notifier: due delivery records in, one email each out (R16-R18).

It reads no broker queue. Commands write a ``pending`` delivery record beside each
``notification.requested`` event (which is still published for other consumers); the
notifier claims due records from the database and sends them over a pool of SMTP
connections, one thread each, each connection reused from mail to mail:

- the *claim* thread (the caller of :meth:`Notifier.run`) claims as many due records as
  the senders can take (``IN_HAND_PER_CONNECTION`` each), in one transaction each time
  slots are free, or, idle, polls every ``poll`` seconds; it also dead-letters failures;
- the *record* thread commits, as soon as one is in, every outcome the senders finished
  (all that came in meanwhile in the same round trip, which takes no account lock), and
  with them renews the leases of every claim in hand, at the latest every third of the
  lease;
- the *announce* thread writes the ``notification.sent`` of the mails recorded sent, under
  their accounts' locks (which a command may hold a while: recording does not wait);
- ``connections`` sender threads build each email (``consumers.outgoing.build_email``) and
  hand it to their own SMTP connection.

A claim is a short lease (``SUBREQ_CLAIM_LEASE``, 15 s by default) that the record thread
keeps renewing: a living notifier, however slow its SMTP server, keeps its claims; a
killed one's claims are taken over by another notifier once their lease ends, within the
lease. A mail whose lease ran out (the database away, say) is not sent by the notifier
that held it: another one may have taken it over.

The email window (the server said 250, the record does not say ``sent`` yet) is the wait
for the record round trip in progress plus the next one: milliseconds (the
``subreq_notification_record_seconds`` histogram shows it). A process killed in it sends
those mails again, with the same ``Message-ID``, once their leases end; claimed mails not
yet handed over are sent once, late by up to the lease. A process killed after recording
a mail sent and before announcing it leaves that to the other notifiers, which look for
such records every lease.

A failure a retry may cure (server away, busy, 4xx) records ``retrying`` with an
exponential backoff; after ``RetryPolicy.attempts`` attempts, or at once for a
permanent one (5xx, an unusable address, a template error), the record says ``failed``
with the reason and a copy of the notification goes to ``subreq.notifications.dead`` with
the reason in ``x-subreq-error`` (confirmed by the broker, else tried again later). When
the database is away, outcomes stay in hand (a sent mail is never sent again for it) and
recording is tried again with backoff.
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
from consumers.metrics import EMAIL_WINDOW, NOTIFICATIONS
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


LAPSED = datetime.min.replace(tzinfo=UTC)
"""The lease of a claim found taken over: its mail is not sent."""


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
        lease: timedelta = timedelta(seconds=15),
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
        self.lease = lease
        self.poll = poll
        self.clock = clock
        self.sent = 0
        self.dead = 0
        self.renewals = 0
        self.ready = threading.Event()
        self._work: queue.SimpleQueue[Claimed | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._sent: queue.SimpleQueue[Outcome] = queue.SimpleQueue()  # to announce
        self._held: dict[tuple[str, str], datetime] = {}
        """The claims in hand (claimed, outcome not recorded yet) and their leases."""
        self._lock = threading.Lock()
        self._freed = threading.Event()  # the record thread freed slots
        self._closing = threading.Event()  # the claim thread is done: record what is left
        # Failures to dead-letter: set by the record thread, cleared by the claim thread
        # before it reads them (so none recorded meanwhile is missed); at start, those an
        # earlier process could not report.
        self._unreported = threading.Event()
        self._unreported.set()

    # --- the claim thread ---------------------------------------------------------------

    def run(self) -> None:
        senders = [
            threading.Thread(target=self._sender, name=f"subreq-mail-{n}", daemon=True)
            for n in range(self.connections)
        ]
        for thread in senders:
            thread.start()
        recorder = threading.Thread(target=self._record, name="subreq-mail-record", daemon=True)
        recorder.start()
        announcer = threading.Thread(
            target=self._announce, args=(recorder,), name="subreq-mail-announce", daemon=True
        )
        announcer.start()
        log.info("%s over %d connections", STARTED, self.connections)
        self.ready.set()
        try:
            self._claim_until_stopped(recorder)
        finally:
            self._closing.set()
            recorder.join()
            announcer.join()
            while True:  # stopped with the database away: what was not handed over stays
                try:
                    self._work.get_nowait()
                except queue.Empty:
                    break
            for _ in senders:
                self._work.put(None)
            for thread in senders:
                thread.join()

    def _claim_until_stopped(self, recorder: threading.Thread) -> None:
        capacity = IN_HAND_PER_CONNECTION * self.connections
        failures = 0
        next_poll = next_report = next_announce = 0.0
        while True:
            stopping = self.stop.is_set()
            held = self._in_hand()
            if stopping and (held == 0 or not recorder.is_alive()):
                if held:
                    log.warning("notifier: stopping with %d claims in hand unrecorded", held)
                return
            want = 0 if stopping else capacity - held
            if want > 0 and time.monotonic() >= next_poll:
                try:
                    claimed = deliveries.exchange(
                        self.db, [], self.clock(), want=want, lease=self.lease
                    ).claimed
                except Exception as exc:
                    failures += 1
                    self._failed_exchange(exc, failures)
                    continue
                failures = 0
                with self._lock:
                    for item in claimed:
                        self._held[_key(item)] = item.lease_until
                for item in claimed:
                    self._work.put(item)
                if len(claimed) < want:  # nothing more due now: poll later
                    next_poll = time.monotonic() + self.poll
            if self._unreported.is_set() and not stopping and time.monotonic() >= next_report:
                self._report_failures()
                next_report = time.monotonic() + self.poll
            if not stopping and time.monotonic() >= next_announce:
                self._announce_stranded()
                next_announce = time.monotonic() + self.lease.total_seconds()
            room = self._in_hand() < capacity and not stopping
            timeout = max(0.0, next_poll - time.monotonic()) if room else self.poll
            if self._wait(timeout):
                next_poll = 0.0  # a commit in this process may have asked for emails

    def _failed_exchange(self, exc: Exception, failures: int) -> None:
        """Log a failed transaction and wait before the next try (with backoff)."""
        delay = min(30.0, 0.5 * 2 ** (failures - 1))
        if isinstance(exc, TransientError):
            log.warning("notifier: %s; trying again in %.1fs", exc, delay)
        else:
            log.exception("notifier: the database work failed unexpectedly")
        self.stop.wait(delay)

    def _in_hand(self) -> int:
        with self._lock:
            return len(self._held)

    def _wait(self, timeout: float) -> bool:
        """Until the record thread frees slots, a commit of this process asks for a look
        (then ``True``), ``stop``, or ``timeout``."""
        deadline = time.monotonic() + timeout
        while not (self._freed.is_set() or self.wake.is_set() or self.stop.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._freed.wait(min(0.05, left))
        self._freed.clear()
        woken = self.wake.is_set()
        self.wake.clear()
        return woken

    # --- the record thread --------------------------------------------------------------

    def _record(self) -> None:
        """Commit outcomes as they come in, renewing the leases in hand on the way, and
        hand the sent ones to the announce thread; until the claim thread is done and
        nothing is left to record."""
        outcomes: list[Outcome] = []
        failures = 0
        while True:
            self._take(outcomes, self._until_renewal())
            renew = self._due_for_renewal()
            if not outcomes and not renew:
                if self._closing.is_set():
                    return
                continue
            try:
                done = deliveries.exchange(
                    self.db,
                    outcomes,
                    self.clock(),
                    want=0,
                    lease=self.lease,
                    renew=renew,
                    announce_sent=False,
                )
            except Exception as exc:  # outcomes stay in hand: a sent mail is never resent
                failures += 1
                if self.stop.is_set():
                    log.warning("notifier: stopping with %d outcomes unrecorded", len(outcomes))
                    return
                self._failed_exchange(exc, failures)
                continue
            failures = 0
            self._recorded(outcomes, renew, done)
            for outcome in done.recorded:
                if outcome.status == "sent":
                    self._sent.put(outcome)
            outcomes = []

    def _announce(self, recorder: threading.Thread) -> None:
        """Write the ``notification.sent`` of the mails recorded sent, all in hand in one
        transaction (under their accounts' locks, which a command may hold a while: the
        record thread does not wait for them); until the record thread is done."""
        sent: list[Outcome] = []
        failures = 0
        while True:
            try:
                sent.append(self._sent.get(timeout=0.05))
            except queue.Empty:
                if not sent and not recorder.is_alive():
                    return
            _drain(self._sent, sent)
            if not sent:
                continue
            try:
                deliveries.announce(self.db, sent)
            except Exception as exc:
                failures += 1
                if self.stop.is_set():
                    log.warning(
                        "notifier: stopping with %d sent mails unannounced (another "
                        "notifier announces them)",
                        len(sent),
                    )
                    return
                self._failed_exchange(exc, failures)
                continue
            failures = 0
            sent = []
            if self.on_commit is not None:
                self.on_commit()

    def _recorded(
        self, outcomes: list[Outcome], renew: list[tuple[str, str]], done: deliveries.Exchange
    ) -> None:
        """The outcomes are committed: their slots are free, the leases renewed."""
        self._renewed(renew, done)
        with self._lock:
            for outcome in outcomes:
                self._held.pop(_key(outcome.claimed), None)
        self._settled(done)
        self._freed.set()

    def _take(self, outcomes: list[Outcome], timeout: float) -> None:
        """Wait up to ``timeout`` for an outcome (at once if some are in hand already),
        then take every other one already in."""
        deadline = time.monotonic() + timeout
        while not outcomes:
            try:
                outcomes.append(self._done.get(timeout=max(0.0, min(0.05, timeout))))
            except queue.Empty:
                timeout = deadline - time.monotonic()
                if timeout <= 0 or self._closing.is_set():
                    break
        _drain(self._done, outcomes)

    def _renewal_due_at(self) -> datetime | None:
        """When the first lease in hand has a third of its time behind it (claims found
        taken over are not renewed); the lock held."""
        first = min((u for u in self._held.values() if u is not LAPSED), default=None)
        return None if first is None else first - self.lease * 2 / 3

    def _until_renewal(self) -> float:
        """Seconds until the leases in hand are due for renewal, at most ``poll``."""
        with self._lock:
            due = self._renewal_due_at()
        if due is None:
            return self.poll
        return max(0.0, min(self.poll, (due - self.clock()).total_seconds()))

    def _due_for_renewal(self) -> list[tuple[str, str]]:
        """Every claim in hand once the first of them is due (renewed together, in one
        statement), else none."""
        with self._lock:
            due = self._renewal_due_at()
            if due is None or due > self.clock():
                return []
            return sorted(key for key, until in self._held.items() if until is not LAPSED)

    def _renewed(self, renew: list[tuple[str, str]], done: deliveries.Exchange) -> None:
        """The new leases of the claims renewed; a claim found taken over is not sent."""
        if not renew:
            return
        until = done.lease_until or LAPSED
        lost = []
        with self._lock:
            for key in renew:
                if key in self._held:
                    renewed = key[0] in done.renewed
                    self._held[key] = until if renewed else LAPSED
                    if not renewed:
                        lost.append(key[0])
        self.renewals += 1
        for notification_id in lost:
            log.warning("notification %s: the claim was taken over while in hand", notification_id)

    def _settled(self, done: deliveries.Exchange) -> None:
        sent = failed = 0
        for outcome in done.recorded:
            if outcome.status == "sent":
                sent += 1
                EMAIL_WINDOW.observe(done.committed - outcome.finished)
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
            self._unreported.set()

    def _announce_stranded(self) -> None:
        """The ``notification.sent`` of mails a notifier recorded sent and died before
        announcing (a lease ago at least: a living one does it at once)."""
        try:
            found = deliveries.announce_stranded(self.db, self.clock() - self.lease)
        except TransientError as exc:
            log.warning("notifier: cannot announce mails sent by a notifier gone: %s", exc)
            return
        if found:
            log.info("notifier: announced %d mails sent by a notifier gone", found)
            if self.on_commit is not None:
                self.on_commit()

    def _report_failures(self) -> None:
        """A confirmed copy in ``subreq.notifications.dead`` of each notification given up,
        then the record says so; with the broker away, tried again at the next look."""
        self._unreported.clear()
        try:
            letters = deliveries.unreported_failures(self.db, REPORT_BATCH)
        except TransientError as exc:
            log.warning("notifier: cannot read failures to dead-letter: %s", exc)
            self._unreported.set()
            return
        if not letters:
            return
        try:
            reported = dead_letter(
                self.url,
                [Letter(n.notification_id, n.event_id, body, why) for n, body, why in letters],
            )
        except Exception as exc:  # the broker: the records keep them due for a copy
            log.warning("notifier: dead-lettering %d notifications failed: %s", len(letters), exc)
            self._unreported.set()
            return
        try:
            deliveries.mark_reported(self.db, reported)
        except TransientError as exc:
            log.warning("notifier: %s; those dead letters may be copied twice", exc)
            self._unreported.set()
            return
        self.dead += len(reported)
        if len(reported) < len(letters) or len(letters) >= REPORT_BATCH:
            self._unreported.set()

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
        with self._lock:
            lease_until = self._held.get(_key(claimed), claimed.lease_until)
        if now >= lease_until - self.lease / 10:
            # The lease ran out in hand (not renewed: the database away) or the claim was
            # taken over: another notifier may send it now. Not sending it keeps it once.
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


def _key(claimed: Claimed) -> tuple[str, str]:
    """A claim in hand: the notification and the claim's token (one notification may be in
    hand twice, under an old claim that lapsed and a new one)."""
    return claimed.notice.notification_id, claimed.token


def _drain(source: queue.SimpleQueue[Outcome], into: list[Outcome]) -> None:
    """Every outcome already in ``source``, without waiting."""
    while True:
        try:
            into.append(source.get_nowait())
        except queue.Empty:
            return
