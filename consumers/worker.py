"""``subreq worker``: the composition root that wires settings, database and broker loops."""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType

from consumers import tracing
from consumers.amqp import patches
from consumers.amqp.connection import parameters
from consumers.consumer import CommandConsumer
from consumers.mail import make_mailer
from consumers.metrics import serve
from consumers.notifier import Notifier, RetryPolicy, utcnow
from consumers.relay import OutboxRelay
from consumers.sweeper import SweeperLoop
from workflow.app.service import CommandService
from workflow.domain.catalog import load_catalog
from workflow.notifications.links import Links
from workflow.notifications.mailconfig import parse_mail_from, parse_smtp_url
from workflow.ops.deadlines import Sweeper
from workflow.persistence.database import Database
from workflow.settings import Settings

log = logging.getLogger(__name__)


COLLECTOR_THRESHOLDS = (10_000, 20, 20)
"""Python's defaults are (700, 10, 10)."""


def settle_collector() -> None:
    """Freeze what start-up made (modules, settings, compiled statements, pools) out of the
    cyclic collector's scans, and collect the young generations less often. The worker
    allocates a lot that dies young, more so tracing: a gc callback measured the
    collector's CPU at 0.23 s over a SQLite benchmark run without tracing and 0.51 s with
    it, full scans of objects that live as long as the process among it."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)


@dataclass(frozen=True)
class WorkerOptions:
    consume: bool = True
    relay: bool = True
    prefetch: int = 200
    batch_size: int = 100
    relay_batch_size: int = 500
    max_deliveries: int = 5
    # Off unless asked for, so embedding a Worker changes nothing; `subreq worker` turns
    # both on, as the contract says it runs all four loops.
    notify: bool = False
    sweep: bool = False
    notify_retry: RetryPolicy = field(default_factory=RetryPolicy)
    claim_timeout: timedelta = timedelta(minutes=5)
    """The lease of a notifier's claim: a ``sending`` record whose lease ended is taken to
    belong to a notifier that died, and is claimed again."""
    sweep_interval: float | None = None
    """Seconds between sweeps; default: a quarter of the shortest timer that is set."""


class Worker:
    """The command consumer, the outbox relay, the email notifier and the sweeper, each on
    its own thread (and broker connection)."""

    def __init__(self, settings: Settings, options: WorkerOptions | None = None) -> None:
        patches.apply()  # pika's workarounds, for this process's loops (see the module)
        self.tracing = tracing.configure()  # from OTEL_*; nothing unless they ask for it
        self.options = options or WorkerOptions()
        parameters(settings.amqp_url)  # a bad URL fails here, naming the variable
        self.db = Database(settings.database_url)
        self.service = CommandService(
            self.db,
            load_catalog(settings.catalog),
            notify_billing_admins=settings.notify_billing_admins,
            dedupe_window=settings.dedupe_window,
        )
        self.stop_event = threading.Event()
        wake = threading.Event()
        self.relay = OutboxRelay(
            settings.amqp_url,
            self.db,
            stop=self.stop_event,
            wake=wake,
            batch_size=self.options.relay_batch_size,
        )
        self.consumer = CommandConsumer(
            settings.amqp_url,
            self.service,
            stop=self.stop_event,
            prefetch=self.options.prefetch,
            batch_size=self.options.batch_size,
            max_deliveries=self.options.max_deliveries,
            on_commit=self._committed,
        )
        self._wakes = [wake]
        self.notifier = self._notifier(settings, wake.set) if self.options.notify else None
        self.sweeper = self._sweeper(settings, wake.set) if self.options.sweep else None
        self._threads: list[threading.Thread] = []
        self.metrics_port = settings.metrics_port

    def _committed(self) -> None:
        """A command batch committed: the relay has events to publish, the notifier maybe
        emails to send (it also polls, for those other processes' commands wrote)."""
        for wake in self._wakes:
            wake.set()

    def _notifier(self, settings: Settings, on_commit: Callable[[], None]) -> Notifier:
        """The email notifier; an unusable SUBREQ_SMTP_URL or SUBREQ_MAIL_FROM fails here."""
        smtp = parse_smtp_url(settings.smtp_url) if settings.smtp_url else None
        mail_wake = threading.Event()
        self._wakes.append(mail_wake)
        return Notifier(
            settings.amqp_url,
            self.db,
            lambda: make_mailer(smtp, settings.mail_dir),
            parse_mail_from(settings.mail_from),
            stop=self.stop_event,
            on_commit=on_commit,
            wake=mail_wake,
            connections=settings.smtp_connections,
            retry=self.options.notify_retry,
            stale_after=self.options.claim_timeout,
            links=Links(self.db, settings.public_url, settings.link_ttl)
            if settings.public_url
            else None,
        )

    def _sweeper(self, settings: Settings, on_commit: Callable[[], None]) -> SweeperLoop:
        sweeper = Sweeper(
            self.db,
            self.service.catalog,
            timers=settings.timers(),
            notify_billing_admins=settings.notify_billing_admins,
            clock=utcnow,
        )
        return SweeperLoop(
            sweeper, stop=self.stop_event, on_commit=on_commit, interval=self.options.sweep_interval
        )

    def start(self) -> None:
        if self.metrics_port is not None:
            self.metrics_port = serve(self.metrics_port, self.db)
        loops: list[tuple[str, Callable[[], None]]] = []
        if self.options.consume:
            loops.append(("subreq-consumer", self.consumer.run))
        if self.options.relay:
            loops.append(("subreq-relay", self.relay.run))
        if self.notifier is not None:
            loops.append(("subreq-notifier", self.notifier.run))
        if self.sweeper is not None:
            loops.append(("subreq-sweeper", self.sweeper.run))
        for name, target in loops:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """True once every started loop is connected and its topology declared."""
        ready = []
        if self.options.consume:
            ready.append(self.consumer.ready.wait(timeout))
        if self.options.relay:
            ready.append(self.relay.ready.wait(timeout))
        if self.notifier is not None:
            ready.append(self.notifier.ready.wait(timeout))
        if self.sweeper is not None:
            ready.append(self.sweeper.ready.wait(timeout))
        return all(ready)

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)
        self.db.dispose()
        if self.tracing:
            tracing.shutdown()

    def run_until_signalled(self) -> None:
        """SIGTERM/SIGINT finish the batch in hand, ack it, and close cleanly."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: finishing the work in hand", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        settle_collector()
        while any(t.is_alive() for t in self._threads):
            for thread in self._threads:
                thread.join(0.2)
        self.join()
