"""The outbox relay: committed events to ``subreq.events``, confirmed before marked sent.

A batch is published in confirm mode and confirmed with one wait (``Confirmed``): the
broker's word that every message of the batch was routed and stored, given in about
one round trip where blocking publisher confirms would wait for one per message.
"""

from __future__ import annotations

import logging
import threading
import time

from consumers.amqp import alarms
from consumers.amqp.connection import Backoff, Connection, run_connected
from consumers.amqp.publishing import Confirmed, publish_events
from consumers.amqp.topology import declare_topology
from consumers.metrics import EVENTS
from workflow.app.outbox import relay_batch
from workflow.errors import TransientError
from workflow.ops.retention import prune
from workflow.persistence.database import Database

log = logging.getLogger(__name__)

PRUNE_EVERY = 600.0
NAME = "subreq-relay"
"""The relay's connection, as ``rabbitmqctl list_connections`` and the logs show it."""


class OutboxRelay:
    """Publishes until ``stop`` is set; ``wake`` cuts the idle wait after a commit."""

    def __init__(
        self,
        url: str,
        db: Database,
        *,
        stop: threading.Event,
        wake: threading.Event | None = None,
        batch_size: int = 500,
        idle_seconds: float = 0.5,
    ) -> None:
        self.url = url
        self.db = db
        self.stop = stop
        self.wake = wake or threading.Event()
        self.batch_size = batch_size
        self.idle_seconds = idle_seconds
        self.published = 0
        self.ready = threading.Event()
        self._next_prune = 0.0

    def run(self) -> None:
        run_connected(
            self.url,
            name=NAME,
            stop=self.stop,
            session=self._session,
            after=self.ready.clear,
        )

    def _session(self, connection: Connection) -> None:
        channel = connection.channel()
        declare_topology(channel)
        confirmed = Confirmed(channel, blocked=lambda: alarms.is_blocked(NAME))
        self.ready.set()
        db_backoff = Backoff()
        while not self.stop.is_set():
            try:
                sent = relay_batch(
                    self.db, lambda events: publish_events(confirmed, events), self.batch_size
                )
            except TransientError as exc:
                delay = db_backoff.next()
                log.warning("relay: database failure (%s); retrying in %.1fs", exc, delay)
                connection.sleep(delay)
                continue
            db_backoff.reset()
            self.published += sent
            EVENTS.inc(sent)
            self._housekeeping()
            if sent < self.batch_size:
                self._idle(connection)
        # Drain what is committed before stopping, so a clean stop leaves no backlog.
        while relay_batch(
            self.db, lambda events: publish_events(confirmed, events), self.batch_size
        ):
            pass

    def _housekeeping(self) -> None:
        """Now and then, prune replies and events past their retention (bounded work)."""
        if time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + PRUNE_EVERY
        try:
            removed = prune(self.db)
        except TransientError as exc:
            log.warning("pruning skipped: %s", exc)
            return
        if removed:
            log.info("pruned %d rows past retention", removed)

    def _idle(self, connection: Connection) -> None:
        """Wait for a wake-up or the idle interval, keeping the connection serviced."""
        deadline = time.monotonic() + self.idle_seconds
        while not self.stop.is_set() and not self.wake.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            connection.process_data_events(time_limit=min(remaining, 0.05))
        self.wake.clear()
