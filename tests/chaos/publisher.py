"""The harness's side of the wire: what a careful publisher in any language would do.

Every command goes out with ``mandatory`` and a publisher confirm; a publish that was
not confirmed (the connection died first) is published again, after a reconnect, with
the SAME ``message_id``: the service's idempotency makes that safe, and the scenarios
check that it does. Replies go to a durable queue of the harness, acknowledged by hand
only once recorded, so none is lost while the harness is disconnected; events go to a
durable queue bound to ``subreq.events`` with ``#`` from before the first worker starts.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import orjson
import pika
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import AMQPError, ChannelClosedByBroker, UnroutableError
from pika.spec import Basic, BasicProperties

from workflow.contract.names import COMMANDS_EXCHANGE, EVENTS_EXCHANGE

RECONNECT_FOR = 90.0  # seconds a reconnect keeps trying before the harness gives up


@dataclass(frozen=True)
class Reply:
    correlation_id: str
    body: bytes
    at: float

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(frozen=True)
class Seen:
    """A message taken from one of the harness's queues."""

    routing_key: str
    properties: BasicProperties
    body: bytes


class ResilientClient:
    """Publishes commands and collects replies and events across broker connection loss."""

    def __init__(
        self, url: str, token: str, name: str = "chaos-harness", *, quorum: bool = False
    ) -> None:
        """``url``: one AMQP URL, or several separated by commas (a cluster's nodes, tried
        in order). ``quorum``: the harness's own queues are quorum queues, replicated on
        every node of a cluster, so they outlive the node they were declared on."""
        self.url = url
        self.queue_arguments = {"x-queue-type": "quorum"} if quorum else None
        self.name = name
        self.reply_queue = f"chaos.replies.{token}"
        self.events_queue = f"chaos.events.{token}"
        self.arrivals: list[Reply] = []
        self.reconnects = 0
        self.republished = 0
        self.connection: BlockingConnection
        self.channel: BlockingChannel
        self._open()

    # --- connection life -------------------------------------------------------------

    def _open(self) -> None:
        candidates = []
        for address in self.url.split(","):
            params = pika.URLParameters(address)
            params.client_properties = {"connection_name": self.name}
            params.heartbeat = 0  # the harness may be busy checking the database for a while
            params.connection_attempts = 1
            params.socket_timeout = 5
            candidates.append(params)
        self.connection = pika.BlockingConnection(candidates)
        self._inspector: BlockingChannel | None = None
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
        args = self.queue_arguments
        self.channel.queue_declare(self.reply_queue, durable=True, arguments=args)
        self.channel.queue_declare(self.events_queue, durable=True, arguments=args)
        self.channel.queue_bind(self.events_queue, EVENTS_EXCHANGE, routing_key="#")
        self.channel.basic_qos(prefetch_count=2000)
        self.channel.basic_consume(self.reply_queue, self._on_reply)

    def reconnect(self) -> None:
        self.reconnects += 1
        with contextlib.suppress(Exception):
            self.connection.close()
        deadline = time.monotonic() + RECONNECT_FOR
        while True:
            try:
                self._open()
                return
            except (AMQPError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _on_reply(
        self, channel: BlockingChannel, method: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        self.arrivals.append(Reply(str(props.correlation_id), body, time.monotonic()))
        channel.basic_ack(method.delivery_tag)

    # --- commands ---------------------------------------------------------------------

    def publish(
        self,
        routing_key: str,
        body: bytes,
        *,
        message_id: str | None,
        correlation_id: str,
        properties: dict[str, Any] | None = None,
    ) -> None:
        """Publish with ``mandatory`` and wait for the confirm; republish (same id) after a
        reconnect when the broker's word never came."""
        props = BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id,
            correlation_id=correlation_id,
            reply_to=self.reply_queue,
        )
        for key, value in (properties or {}).items():
            setattr(props, key, value)
        while True:
            try:
                self.channel.basic_publish(
                    COMMANDS_EXCHANGE, routing_key, body, props, mandatory=True
                )
                return
            except UnroutableError:
                raise AssertionError(
                    f"{routing_key} {message_id} was unroutable: no subreq.commands queue"
                ) from None
            except (AMQPError, OSError):
                self.republished += 1
                self.reconnect()

    def pump(self, seconds: float = 0.02) -> None:
        """Let replies in (and notice a dead connection)."""
        try:
            self.connection.process_data_events(time_limit=seconds)
        except (AMQPError, OSError):
            self.reconnect()

    def take_arrivals(self) -> list[Reply]:
        found, self.arrivals = self.arrivals, []
        return found

    # --- queues -----------------------------------------------------------------------

    def queue_state(self, queue: str) -> tuple[int, int]:
        """(messages ready, consumers) of ``queue``; (0, 0) while nobody declared it. A
        channel of its own: a passive declare of a missing queue closes its channel."""
        for _ in range(5):
            try:
                if self._inspector is None or not self._inspector.is_open:
                    self._inspector = self.connection.channel()
                method = self._inspector.queue_declare(queue, passive=True).method
                return int(method.message_count), int(method.consumer_count)
            except ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    return 0, 0
            except (AMQPError, OSError):
                self.reconnect()
        raise AssertionError(f"cannot inspect {queue}")

    def get_all(self, queue: str) -> list[Seen]:
        """Every message ready in ``queue``, removed from it."""
        found: list[Seen] = []
        while True:
            method, props, body = self.channel.basic_get(queue, auto_ack=True)
            if method is None:
                return found
            found.append(Seen(method.routing_key, props, body))

    def drain_events(self, quiet: float = 1.0, timeout: float = 120.0) -> list[Seen]:
        """Everything in the events queue, in arrival order, until it stayed empty for
        ``quiet`` seconds and the broker counts nothing ready in it (a quorum queue may
        pause between deliveries for longer, on a busy machine)."""
        found: list[Seen] = []

        def on_event(
            channel: BlockingChannel, method: Basic.Deliver, props: BasicProperties, body: bytes
        ) -> None:
            found.append(Seen(method.routing_key, props, body))
            channel.basic_ack(method.delivery_tag)

        channel = self.connection.channel()
        channel.basic_qos(prefetch_count=2000)
        tag = channel.basic_consume(self.events_queue, on_event)
        deadline = time.monotonic() + timeout
        last, last_count = time.monotonic(), -1
        while time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.1)
            if len(found) != last_count:
                last, last_count = time.monotonic(), len(found)
            elif time.monotonic() - last > quiet:
                if not self.queue_state(self.events_queue)[0]:
                    break
                last = time.monotonic()  # more is there: keep reading
        channel.basic_cancel(tag)
        channel.close()
        return found

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()
