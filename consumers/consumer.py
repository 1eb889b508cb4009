"""The command consumer: deliveries in, one transaction per batch, replies out, then acks.

The broker I/O stays on the connection's thread; the database work runs on one
worker thread and hands its results back with ``add_callback_threadsafe``, so
heartbeats keep flowing however long a transaction waits on a lock. A message
is acknowledged only after its transaction committed and its reply (and, for an
unusable message, its dead-letter copy) was published.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import AMQPError
from pika.spec import Basic, BasicProperties

from consumers.amqp.connection import run_connected
from consumers.amqp.publishing import bury, publish_queued
from consumers.amqp.topology import declare_topology
from consumers.metrics import COMMANDS, LATENCY
from workflow.app.service import CommandService, Outcome
from workflow.contract.messages import COMMANDS as COMMAND_NAMES
from workflow.contract.names import (
    COMMANDS_QUEUE,
    DEAD_QUEUE,
    DELIVERY_COUNT_HEADER,
    REPLY_SUFFIX,
    ROUTING_KEY_HEADER,
)
from workflow.errors import TransientError

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)
"""In-process retries of a batch that met a database failure, before it is requeued."""


@dataclass(frozen=True, slots=True)
class Delivery:
    tag: int
    routing_key: str
    properties: BasicProperties
    body: bytes
    received: float = field(default_factory=time.monotonic)

    @property
    def deliveries(self) -> int:
        """How often the broker delivered it (quorum queues count in x-delivery-count)."""
        headers = self.properties.headers or {}
        count = headers.get(DELIVERY_COUNT_HEADER, 0)
        return (count if isinstance(count, int) else 0) + 1


@dataclass(frozen=True, slots=True)
class Failed:
    """A batch whose database work kept failing for an infrastructure reason."""

    reason: str


def _label(routing_key: str) -> str:
    """Metric label: garbage routing keys must not create new time series."""
    return routing_key if routing_key in COMMAND_NAMES else "unknown"


def _context(delivery: Delivery, **more: Any) -> dict[str, Any]:
    props = delivery.properties
    return {
        "command": delivery.routing_key[:64],
        "message_id": props.message_id,
        "correlation_id": props.correlation_id,
        **more,
    }


def _observe(delivery: Delivery, outcome: Outcome) -> None:
    """Metrics and a log line per command; ids only, never the body."""
    if outcome.invalid:
        label = "dead_lettered"
    elif outcome.duplicate:
        label = "duplicate"
    else:
        label = outcome.error_code or "ok"
    COMMANDS.labels(_label(delivery.routing_key), label).inc()
    elapsed = time.monotonic() - delivery.received
    LATENCY.observe(elapsed)
    if label in ("ok", "duplicate") and not log.isEnabledFor(logging.DEBUG):
        return  # the common case: no log line, so no context to build
    context = _context(
        delivery,
        outcome=label,
        account_id=outcome.account_id,
        request_id=outcome.request_id,
        duration_ms=round(elapsed * 1000, 2),
    )
    if outcome.invalid:
        log.warning("unusable command dead-lettered: %s", outcome.error_reason, extra=context)
    elif outcome.error_code:
        log.info("command refused: %s", outcome.error_code, extra=context)
    else:
        log.debug("command handled", extra=context)


class CommandConsumer:
    """Consumes ``subreq.commands`` until ``stop`` is set, reconnecting on broker loss."""

    def __init__(
        self,
        url: str,
        service: CommandService,
        *,
        stop: threading.Event,
        prefetch: int = 200,
        batch_size: int = 100,
        max_deliveries: int = 5,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.service = service
        self.stop = stop
        self.prefetch = max(prefetch, batch_size)
        self.batch_size = batch_size
        self.max_deliveries = max_deliveries
        self.retry_delays = tuple(retry_delays)
        self.on_commit = on_commit
        self.ready = threading.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="subreq-db")
        self._buffer: list[Delivery] = []
        self._in_flight: Future[list[Outcome] | Failed] | None = None

    # --- connection life -------------------------------------------------------

    def run(self) -> None:
        try:
            run_connected(
                self.url,
                name="subreq-commands",
                stop=self.stop,
                session=self._session,
                after=self._drop_in_hand,
            )
        finally:
            self._executor.shutdown(wait=True)

    def _drop_in_hand(self) -> None:
        """Acks for a dead channel would close the new one (406): forget them. The broker
        redelivers those messages and the idempotency records answer them."""
        if self._in_flight is not None:
            self._in_flight.result()  # the transaction itself finishes either way
        self._in_flight = None
        self._buffer.clear()
        self.ready.clear()

    def _session(self, connection: BlockingConnection) -> None:
        channel = connection.channel()
        declare_topology(channel)
        channel.basic_qos(prefetch_count=self.prefetch)
        dead = connection.channel()
        dead.confirm_delivery()
        tag = channel.basic_consume(COMMANDS_QUEUE, self._on_message)
        self.ready.set()
        log.info(
            "consuming %s (prefetch %d, batch %d)", COMMANDS_QUEUE, self.prefetch, self.batch_size
        )
        while not self.stop.is_set():
            self._gather(connection)
            self._dispatch(connection, channel, dead)
            # Returns as soon as a delivery or the batch's result arrives; a zero limit
            # only when a batch can start now, so this thread never spins.
            idle = self._in_flight is not None or not self._buffer
            connection.process_data_events(time_limit=0.05 if idle else 0)
        channel.basic_cancel(tag)  # deliveries not yet handed to us go back to the queue
        while self._buffer or self._in_flight is not None:  # finish what is in hand
            connection.process_data_events(time_limit=0.01)
            self._dispatch(connection, channel, dead)
        connection.close()

    def _gather(self, connection: BlockingConnection) -> None:
        """Before a batch starts, read what the socket already holds: deliveries of a burst
        trickle in, and a batch of the first one alone would make the rest wait for it."""
        if self._in_flight is not None or not self._buffer:
            return
        while len(self._buffer) < self.batch_size:
            before = len(self._buffer)
            connection.process_data_events(time_limit=0)
            if len(self._buffer) == before:
                return

    def _on_message(
        self,
        _channel: BlockingChannel,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        self._buffer.append(Delivery(method.delivery_tag, method.routing_key, properties, body))

    # --- batches ---------------------------------------------------------------

    def _dispatch(
        self, connection: BlockingConnection, channel: BlockingChannel, dead: BlockingChannel
    ) -> None:
        if self._in_flight is not None or not self._buffer:
            return
        batch, self._buffer = self._buffer[: self.batch_size], self._buffer[self.batch_size :]
        future = self._executor.submit(self._process, batch)
        self._in_flight = future

        def finished(_: Future[Any]) -> None:
            # A connection that died meanwhile refuses the callback: the broker
            # redelivers the batch, and the stored replies answer it.
            with contextlib.suppress(AMQPError):
                connection.add_callback_threadsafe(
                    lambda: self._finish(channel, dead, batch, future)
                )

        future.add_done_callback(finished)

    def _process(self, batch: list[Delivery]) -> list[Outcome] | Failed:
        """On the database thread: the batch in one transaction, retried with backoff."""
        items = [(d.routing_key, d.body, d.properties.message_id) for d in batch]
        for delay in (*self.retry_delays, None):
            try:
                outcomes = self.service.handle_batch(items)
            except TransientError as exc:
                if delay is None or self.stop.is_set():
                    return Failed(str(exc))
                log.warning("database failure (%s); retrying batch in %.1fs", exc, delay)
                time.sleep(delay)
                continue
            if self.on_commit is not None:
                self.on_commit()
            return outcomes
        raise AssertionError("unreachable")

    def _finish(
        self,
        channel: BlockingChannel,
        dead: BlockingChannel,
        batch: list[Delivery],
        future: Future[list[Outcome] | Failed],
    ) -> None:
        """On the connection thread: publish what the batch produced, then settle it."""
        self._in_flight = None
        if not channel.is_open:
            return
        try:
            result = future.result()
        except Exception:  # a bug, not bad input: isolate the message that triggers it
            log.exception("batch failed; handling its commands one by one")
            result = [self._one(d) for d in batch]
        if isinstance(result, Failed):
            self._requeue_or_bury(channel, dead, batch, result.reason)
            return
        for delivery, outcome in zip(batch, result, strict=True):
            if outcome.invalid:
                self._bury(dead, delivery, outcome.error_reason or "invalid message")
            self._reply(channel, delivery, outcome)
        channel.basic_ack(batch[-1].tag, multiple=True)
        for delivery, outcome in zip(batch, result, strict=True):
            _observe(delivery, outcome)

    def _one(self, delivery: Delivery) -> Outcome:
        try:
            return self.service.handle(
                delivery.routing_key, delivery.body, delivery.properties.message_id
            )
        except Exception as exc:
            log.exception("command %s failed", delivery.properties.message_id)
            return Outcome(b"", invalid=True, error_reason=f"internal error: {exc!r}"[:500])

    def _requeue_or_bury(
        self, channel: BlockingChannel, dead: BlockingChannel, batch: list[Delivery], reason: str
    ) -> None:
        for delivery in batch:
            if delivery.deliveries >= self.max_deliveries:
                self._bury(
                    dead, delivery, f"gave up after {delivery.deliveries} deliveries: {reason}"
                )
                channel.basic_ack(delivery.tag)
            else:
                channel.basic_nack(delivery.tag, requeue=True)

    # --- publishing ------------------------------------------------------------

    def _reply(self, channel: BlockingChannel, delivery: Delivery, outcome: Outcome) -> None:
        props = delivery.properties
        if not props.reply_to or not outcome.reply:
            return
        publish_queued(  # written with the batch's ack, which follows the replies
            channel,
            "",
            props.reply_to,
            outcome.reply,
            BasicProperties(
                content_type="application/json",
                correlation_id=props.correlation_id or props.message_id,
                type=delivery.routing_key + REPLY_SUFFIX,
            ),
        )

    @staticmethod
    def _bury(dead: BlockingChannel, delivery: Delivery, reason: str) -> None:
        """A confirmed copy in the dead letters, original body and properties kept."""
        bury(
            dead,
            DEAD_QUEUE,
            delivery.body,
            delivery.properties,
            reason,
            **{ROUTING_KEY_HEADER: delivery.routing_key},
        )
