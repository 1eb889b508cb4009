"""``subreq worker``: the composition root that wires settings, database and broker loops."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from consumers.amqp import parameters
from consumers.consumer import CommandConsumer
from consumers.relay import OutboxRelay
from workflow.catalog import load_catalog
from workflow.database import Database
from workflow.service import CommandService
from workflow.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerOptions:
    consume: bool = True
    relay: bool = True
    prefetch: int = 200
    batch_size: int = 100
    relay_batch_size: int = 500
    max_deliveries: int = 5


class Worker:
    """The command consumer and the outbox relay, each on its own thread and connection."""

    def __init__(self, settings: Settings, options: WorkerOptions | None = None) -> None:
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
            on_commit=wake.set,
        )
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        loops: list[tuple[str, Callable[[], None]]] = []
        if self.options.consume:
            loops.append(("subreq-consumer", self.consumer.run))
        if self.options.relay:
            loops.append(("subreq-relay", self.relay.run))
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
        return all(ready)

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> None:
        for thread in self._threads:
            thread.join(timeout)
        self.db.dispose()

    def run_until_signalled(self) -> None:
        """SIGTERM/SIGINT finish the batch in hand, ack it, and close cleanly."""

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: finishing the work in hand", signal.Signals(signum).name)
            self.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        self.start()
        while any(t.is_alive() for t in self._threads):
            for thread in self._threads:
                thread.join(0.2)
        self.join()
