"""The command consumer: deliveries in, one transaction per batch, replies out, then acks.

It runs on ``consumers.amqp.loop``: broker I/O on the connection's thread, the
database work on one worker thread, so heartbeats keep flowing however long a
transaction waits on a lock. A message is acknowledged only after its transaction
committed and its reply (and, for an unusable message, its confirmed dead-letter
copy) was published; ``settle_batch`` decides those steps without a broker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from consumers.amqp.deliveries import Ack, Action, Bury, Delivery, Reply, Requeue
from consumers.amqp.loop import Apply, DeliveryLoop
from consumers.metrics import COMMANDS, LATENCY
from workflow.app.service import CommandService, Item, Outcome
from workflow.contract.messages import COMMANDS as COMMAND_NAMES
from workflow.contract.names import COMMANDS_QUEUE, DEAD_QUEUE, REPLY_SUFFIX, ROUTING_KEY_HEADER
from workflow.errors import TransientError
from workflow.telemetry import Context, SpanKind, carried, link_from, link_to, messaging, tracer

log = logging.getLogger(__name__)

RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)
"""In-process retries of a batch that met a database failure, before it is requeued."""


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


def settle_batch(
    batch: Sequence[Delivery], result: Sequence[Outcome] | Failed, max_deliveries: int
) -> list[Action]:
    """What to tell the broker about a batch, in order.

    Handled: each unusable command buried (confirmed) before anything else of it, each
    reply queued, then one ack for the whole batch, which writes the replies with it.
    Failed: each delivery requeued, or, once delivered ``max_deliveries`` times, buried
    with the reason and acknowledged, so an outage ends in the dead letters, not a loop.
    """
    if isinstance(result, Failed):
        actions: list[Action] = []
        for delivery in batch:
            if delivery.deliveries >= max_deliveries:
                reason = f"gave up after {delivery.deliveries} deliveries: {result.reason}"
                actions += [_buried(delivery, reason), Ack(delivery.tag)]
            else:
                actions.append(Requeue(delivery.tag))
        return actions
    actions = []
    for delivery, outcome in zip(batch, result, strict=True):
        if outcome.invalid:
            actions.append(_buried(delivery, outcome.error_reason or "invalid message"))
        reply = _reply(delivery, outcome)
        if reply is not None:
            actions.append(reply)
    actions.append(Ack(batch[-1].tag, multiple=True))
    return actions


def _buried(delivery: Delivery, reason: str) -> Bury:
    """A copy in the dead letters, original body and properties kept, with its routing key
    (the copy travels on the default exchange)."""
    return Bury(DEAD_QUEUE, delivery, reason, ((ROUTING_KEY_HEADER, delivery.routing_key),))


def _reply(delivery: Delivery, outcome: Outcome) -> Reply | None:
    props = delivery.properties
    if not props.reply_to or not outcome.reply:
        return None
    return Reply(
        props.reply_to,
        outcome.reply,
        props.correlation_id or props.message_id,
        delivery.routing_key + REPLY_SUFFIX,
        outcome.traceparent,
    )


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
        self._loop = DeliveryLoop(
            url,
            self,
            name="subreq-commands",
            queue=COMMANDS_QUEUE,
            prefetch=self.prefetch,
            stop=stop,
            work_thread="subreq-db",
            poll=0.05,
            finish_held=True,  # a stop finishes every delivery in hand
            announce=(
                f"consuming {COMMANDS_QUEUE} (prefetch {self.prefetch}, batch {self.batch_size})"
            ),
        )
        self.ready = self._loop.ready

    def run(self) -> None:
        self._loop.run()

    # --- what the loop asks of it ----------------------------------------------

    @staticmethod
    def hold(delivery: Delivery) -> Delivery:
        return delivery

    def take(self, held: list[Delivery], read: Callable[[], None]) -> list[Delivery] | None:
        """The next batch. Before it starts, read what the socket already holds: deliveries
        of a burst trickle in, and a batch of the first one alone would make the rest wait."""
        while len(held) < self.batch_size:
            before = len(held)
            read()
            if len(held) == before:
                break
        batch = held[: self.batch_size]
        del held[: self.batch_size]
        return batch

    @staticmethod
    def due_in(_held: list[Delivery]) -> float:
        return 0.0  # a batch may always start

    def work(self, batch: list[Delivery]) -> list[Outcome] | Failed:
        """On the database thread: the batch in one transaction, retried with backoff."""
        items = [(d.routing_key, d.body, d.properties.message_id) for d in batch]
        contexts = [carried(d.properties.headers) for d in batch]
        links = [link for c in contexts if (link := link_to(c)) is not None]
        with tracer().start_as_current_span(
            f"process {COMMANDS_QUEUE}",
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={**messaging("process", COMMANDS_QUEUE, None, None), "batch": len(batch)},
        ):
            return self._work(items, contexts)

    def _work(self, items: Sequence[Item], contexts: list[Context]) -> list[Outcome] | Failed:
        for delay in (*self.retry_delays, None):
            try:
                outcomes = self.service.handle_batch(items, contexts)
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

    def settle(
        self,
        batch: list[Delivery],
        result: Future[list[Outcome] | Failed],
        _held: list[Delivery],
        apply: Apply,
    ) -> None:
        """On the connection thread: publish what the batch produced, then settle it."""
        try:
            outcomes = result.result()
        except Exception:  # a bug, not bad input: isolate the message that triggers it
            log.exception("batch failed; handling its commands one by one")
            outcomes = [self._one(d) for d in batch]
        # Linked to each command's processing span: no header is parsed again, and with
        # tracing off there is nothing to link (no outcome carries a traceparent).
        processed = [] if isinstance(outcomes, Failed) else outcomes
        links = [link for o in processed if (link := link_from(o.traceparent)) is not None]
        with tracer().start_as_current_span(
            f"settle {COMMANDS_QUEUE}",
            kind=SpanKind.CLIENT,
            links=links,
            attributes={**messaging("settle", COMMANDS_QUEUE, None, None), "batch": len(batch)},
        ):
            apply(settle_batch(batch, outcomes, self.max_deliveries))
        if not isinstance(outcomes, Failed):
            for delivery, outcome in zip(batch, outcomes, strict=True):
                _observe(delivery, outcome)

    def _one(self, delivery: Delivery) -> Outcome:
        try:
            return self.service.handle(
                delivery.routing_key, delivery.body, delivery.properties.message_id
            )
        except Exception as exc:
            log.exception("command %s failed", delivery.properties.message_id)
            return Outcome(b"", invalid=True, error_reason=f"internal error: {exc!r}"[:500])
