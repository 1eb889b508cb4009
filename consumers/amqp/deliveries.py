"""Deliveries in hand, and the actions that settle them.

The consumers decide what to tell the broker as plain values (``Ack``, ``Requeue``,
``Bury``, ``Reply``, ``Later``), without a channel in sight, so the decisions are tested
without a broker; ``apply`` is the one place that turns them into channel calls.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import BasicProperties

from consumers.amqp.publishing import Confirmed, bury
from workflow.contract.names import DELIVERY_COUNT_HEADER
from workflow.telemetry import messaging, producer_span


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message as the broker handed it over, not yet settled."""

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
class Ack:
    """Acknowledge ``tag``; with ``multiple``, every earlier delivery of the channel too."""

    tag: int
    multiple: bool = False


@dataclass(frozen=True, slots=True)
class Requeue:
    """Give ``tag`` back to its queue (a requeue counts toward the delivery limit)."""

    tag: int


@dataclass(frozen=True, slots=True)
class Bury:
    """A copy of ``delivery`` in the dead-letter ``queue``, with ``reason`` and ``headers``;
    it returns once the broker confirmed the copy, so an ``Ack`` after it is safe."""

    queue: str
    delivery: Delivery
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Reply:
    """A command's answer for its ``reply_to``, written with the ack that follows it."""

    to: str
    body: bytes
    correlation_id: str | None
    type: str
    traceparent: str | None = None
    """The command's trace, which the reply's publish span continues."""


@dataclass(frozen=True, slots=True)
class Later:
    """Nothing for the broker yet: the delivery stays in hand for ``delay`` seconds."""

    delay: float


Action = Ack | Requeue | Bury | Reply | Later


def _reply(
    publisher: Confirmed,
    to: str,
    body: bytes,
    correlation_id: str | None,
    type_: str,
    traceparent: str | None,
) -> None:
    """A reply in the command's trace: its publish span's context travels as headers."""
    properties = BasicProperties(
        content_type="application/json",
        correlation_id=correlation_id,
        type=type_,
        timestamp=int(time.time()),  # when it was answered, in epoch seconds
    )
    if traceparent is None:  # tracing off: no span, no headers
        publisher.publish("", to, body, properties)
        return
    with producer_span(
        f"publish {to}", traceparent, messaging("publish", "", to, correlation_id)
    ) as headers:
        properties.headers = headers
        publisher.publish("", to, body, properties)


def apply(actions: Sequence[Action], replies: Confirmed, dead: BlockingChannel) -> None:
    """The actions in their order: replies (confirmed) and acks on the consuming channel
    of ``replies``, dead letters on the confirming ``dead`` channel. An ack or requeue
    waits until the replies before it are confirmed."""
    channel = replies.channel
    for action in actions:
        match action:
            case Ack(tag, multiple):
                replies.wait()
                channel.basic_ack(tag, multiple=multiple)
            case Requeue(tag):
                replies.wait()
                channel.basic_nack(tag, requeue=True)
            case Bury(queue, delivery, reason, headers):
                bury(dead, queue, delivery.body, delivery.properties, reason, **dict(headers))
            case Reply(to, body, correlation_id, type_, traceparent):
                _reply(replies, to, body, correlation_id, type_, traceparent)
            case Later():
                pass  # the consumer that holds the delivery tries it again
