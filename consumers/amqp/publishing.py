"""Publishing: batches written in a few socket calls, and confirmed dead-letter copies."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any, TypeAlias

import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from consumers.amqp.errors import NotConfirmed
from workflow.app.outbox import PendingEvent
from workflow.contract.names import DROPPED_HEADERS_HEADER, ERROR_HEADER, EVENTS_EXCHANGE
from workflow.telemetry import messaging, producer_span

Properties: TypeAlias = BasicProperties
"""pika's message properties, for annotations outside this package."""


def publish_queued(
    channel: BlockingChannel,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: BasicProperties,
) -> None:
    """Publish without writing the socket yet: the channel's next blocking call (an ack, a
    wait for confirms, ``process_data_events``) sends a whole batch in a few ``send()``
    calls, where ``BlockingChannel.basic_publish`` makes one per message (and, in confirm
    mode, waits for each confirm: ``Confirmed`` waits once for a batch)."""
    channel._impl.basic_publish(  # the non-blocking channel under every BlockingChannel
        exchange=exchange, routing_key=routing_key, body=body, properties=properties
    )


CONFIRM_TIMEOUT = 15.0
"""Seconds the broker may take to confirm a batch, time blocked by an alarm not counted."""
WAIT_TICK = 0.25


class Confirmed:
    """Publisher confirms on ``channel`` without a wait per message: publish a batch, then
    ``wait`` once until the broker confirmed all of it.

    The command consumer publishes its replies this way and acknowledges the commands
    only after the wait: on a cluster the reply queue and the command queue may be led by
    different nodes, and an acknowledgement the command queue committed must not outlive
    a reply its queue never took (a node dying between the two). A confirm that does not
    come within ``CONFIRM_TIMEOUT`` (a publish sent to a queue leader that died, which a
    chaos run saw wait until the connection closed) ends the wait with ``NotConfirmed``;
    the time ``blocked()`` says the broker blocks the connection (a resource alarm) does
    not count."""

    def __init__(self, channel: BlockingChannel, blocked: Callable[[], bool] = bool) -> None:
        self.channel = channel
        self._blocked = blocked
        self._sent = 0
        self._unconfirmed: set[int] = set()
        self._refused = 0
        selected: list[object] = []
        channel._impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=selected.append)
        channel._flush_output(lambda: bool(selected))

    def publish(self, exchange: str, routing_key: str, body: bytes, props: BasicProperties) -> None:
        publish_queued(self.channel, exchange, routing_key, body, props)
        self._sent += 1
        self._unconfirmed.add(self._sent)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        tag = method.delivery_tag
        done = {t for t in self._unconfirmed if t <= tag} if method.multiple else {tag}
        self._unconfirmed -= done
        if isinstance(method, Basic.Nack):
            self._refused += len(done)

    def wait(self) -> None:
        """Returns once everything published so far is confirmed; ``NotConfirmed`` when the
        broker refused some of it, or did not answer in time (the session then starts over:
        what was unconfirmed is published again, the same message ids)."""
        impl = self.channel.connection._impl
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        while self._unconfirmed:
            if self._blocked():
                deadline = time.monotonic() + CONFIRM_TIMEOUT
            elif time.monotonic() > deadline:
                raise NotConfirmed(
                    f"{len(self._unconfirmed)} messages not confirmed in {CONFIRM_TIMEOUT:g} s"
                )
            self._wait_a_tick(impl)
        if self._refused:
            refused, self._refused = self._refused, 0
            raise NotConfirmed(f"the broker refused {refused} messages")

    def _wait_a_tick(self, impl: Any) -> None:
        """I/O until everything is confirmed or ``WAIT_TICK`` passed (a timer wakes it)."""
        ticked: list[bool] = []
        timer = impl._adapter_call_later(WAIT_TICK, lambda: ticked.append(True))
        try:
            self.channel._flush_output(lambda: not self._unconfirmed, lambda: bool(ticked))
        finally:
            impl._adapter_remove_timeout(timer)


def publish_events(confirmed: Confirmed, events: Sequence[PendingEvent]) -> None:
    """The relay's batch, in confirm mode: returns once the broker confirmed all of it; any
    failure raises, and the database transaction that claimed the rows rolls back.
    (An AMQP transaction is no such word on a cluster: a chaos run on three nodes had
    ``tx.commit-ok`` for events its quorum queue never held, published while that
    queue's leader had just died.) Events written in a trace are published in it: the
    events one command wrote (adjacent in the outbox) share one publish span continuing
    the stored context, whose ``traceparent`` each of them carries as a header."""
    for traceparent, group in groupby(events, key=lambda event: event.traceparent):
        same_trace = list(group)
        if traceparent is None:  # written without a trace (tracing off)
            for event in same_trace:
                _publish_event(confirmed, event, None)
            continue
        first = same_trace[0]
        attributes: dict[str, str | int] = {
            **messaging("publish", EVENTS_EXCHANGE, first.type, first.event_id)
        }
        if len(same_trace) > 1:
            attributes = {
                **messaging("publish", EVENTS_EXCHANGE, None, None),
                "messaging.batch.message_count": len(same_trace),
            }
        with producer_span(f"publish {EVENTS_EXCHANGE}", traceparent, attributes) as headers:
            for event in same_trace:
                _publish_event(confirmed, event, headers)
    confirmed.wait()  # writes them all, and waits for the broker's word


def _publish_event(
    confirmed: Confirmed, event: PendingEvent, headers: dict[str, str] | None
) -> None:
    properties = BasicProperties(
        content_type="application/json",
        delivery_mode=pika.DeliveryMode.Persistent,
        message_id=event.event_id,
        type=event.type,
        timestamp=int(event.occurred_at.timestamp()),  # the event's occurred_at
        headers=headers,
    )
    confirmed.publish(EVENTS_EXCHANGE, event.type, event.payload, properties)


def copy_properties(props: BasicProperties, headers: dict[str, Any]) -> BasicProperties:
    """The original properties, persistent, with ``headers``: for dead letters and replays."""
    return BasicProperties(
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        headers=headers,
        delivery_mode=pika.DeliveryMode.Persistent,
        priority=props.priority,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        message_id=props.message_id,
        timestamp=props.timestamp,
        type=props.type,
        app_id=props.app_id,
    )


def bury(
    channel: BlockingChannel,
    queue: str,
    body: bytes,
    props: BasicProperties,
    reason: str,
    **headers: Any,
) -> None:
    """A copy in a dead-letter queue with the reason in ``x-subreq-error``; on a confirming
    channel this returns only once the broker has it."""
    kept = dict(props.headers or {})
    kept[ERROR_HEADER] = reason[:1000]
    kept.update(headers)
    try:
        channel.basic_publish("", queue, body, copy_properties(props, kept), mandatory=True)
    except (struct.error, OverflowError, TypeError, ValueError):
        # A header pika decoded but cannot encode again (e.g. a double beyond 2**63):
        # the copy keeps the body, the reason and the message's identity, not the headers.
        ours = {ERROR_HEADER: reason[:1000], DROPPED_HEADERS_HEADER: True, **headers}
        channel.basic_publish("", queue, body, copy_properties(props, ours), mandatory=True)
