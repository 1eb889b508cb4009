"""The client's half on the broker: commands published with confirms, replies collected
by correlation id through RabbitMQ's direct reply-to (no queue of its own)."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import UnroutableError
from pika.spec import Basic, BasicProperties

from consumers.amqp.connection import connect
from consumers.amqp.errors import NoWorker, ReplyTimeout
from workflow.contract.names import COMMANDS_EXCHANGE, REPLY_TO


class RpcConnection:
    """One connection and one confirming channel; not thread-safe."""

    def __init__(self, url: str, *, name: str = "subreq-client") -> None:
        self._connection = connect(url, name=name)
        self._channel: BlockingChannel = self._connection.channel()
        self._channel.confirm_delivery()
        self._replies: dict[str, dict[str, Any]] = {}
        self._awaited: set[str] = set()
        """Correlation ids published with a reply_to and not answered yet: a late reply
        (after a timeout, or a duplicate's second answer) is dropped, not kept forever."""
        self._channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)

    def _on_reply(
        self, _ch: BlockingChannel, _m: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        if props.correlation_id in self._awaited:
            self._replies[props.correlation_id] = orjson.loads(body)

    def publish(
        self, routing_key: str, body: bytes, message_id: str, correlation_id: str, *, reply: bool
    ) -> None:
        """Returns once the broker confirmed the command; ``NoWorker`` when it was unroutable."""
        if reply:  # before publishing: the reply may come in while the confirm is awaited
            self._awaited.add(correlation_id)
        try:
            self._channel.basic_publish(
                COMMANDS_EXCHANGE,
                routing_key,
                body,
                pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=pika.DeliveryMode.Persistent,
                    message_id=message_id,
                    correlation_id=correlation_id,
                    reply_to=REPLY_TO if reply else None,
                ),
                mandatory=True,
            )
        except UnroutableError:
            self._awaited.discard(correlation_id)
            raise NoWorker(
                "the command could not be routed: start `subreq worker` once so it declares "
                "the subreq.commands queue"
            ) from None

    def wait(self, correlation_id: str, timeout: float) -> dict[str, Any]:
        """The reply to ``correlation_id``, or ``ReplyTimeout`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        try:
            while correlation_id not in self._replies:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ReplyTimeout(
                        f"no reply to {correlation_id} within {timeout:g} s; the command may "
                        "still be processed: retry with the same message_id"
                    )
                self._connection.process_data_events(time_limit=min(remaining, 0.1))
            return self._replies.pop(correlation_id)
        finally:
            self._awaited.discard(correlation_id)

    def close(self) -> None:
        if self._connection.is_open:
            self._connection.close()
