"""The client's half on the broker: commands published with confirms, replies collected
by correlation id through RabbitMQ's direct reply-to (no queue of its own).

When the connection is lost (its broker node died, or closed it), the client fails over:
it connects again, to the first address of the URL that answers, and publishes every
command still awaiting its reply again, with the same ``message_id``. The worker's
idempotency makes that one effect, and the stored reply comes to the new connection
(a direct reply-to address lives as long as the connection that consumed it).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
import pika
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, UnroutableError
from pika.spec import Basic, BasicProperties

from consumers.amqp.connection import connect, where
from consumers.amqp.errors import NoWorker, ReplyTimeout
from workflow.contract.names import COMMANDS_EXCHANGE, REPLY_TO

log = logging.getLogger(__name__)

FAILOVER_PAUSE = 0.2
"""Seconds between two attempts to reconnect while a reply is awaited."""


@dataclass(frozen=True)
class Sent:
    """A command published with a reply_to, kept until answered to publish it again."""

    routing_key: str
    body: bytes
    message_id: str


class RpcConnection:
    """One connection and one confirming channel; not thread-safe."""

    def __init__(self, url: str, *, name: str = "subreq-client") -> None:
        self._url = url
        self._name = name
        self._replies: dict[str, dict[str, Any]] = {}
        self._awaited: dict[str, Sent] = {}
        """Commands published with a reply_to and not answered yet, by correlation id: a
        late reply (after a timeout, or a duplicate's second answer) is dropped, not kept
        forever, and a failover publishes these again."""
        self.failovers = 0
        self._open()

    def _open(self) -> None:
        self._connection = connect(self._url, name=self._name)
        self._channel: BlockingChannel = self._connection.channel()
        self._channel.confirm_delivery()
        self._channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)

    def _on_reply(
        self, _ch: BlockingChannel, _m: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        if props.correlation_id in self._awaited:
            self._replies[props.correlation_id] = orjson.loads(body)

    def publish(
        self, routing_key: str, body: bytes, message_id: str, correlation_id: str, *, reply: bool
    ) -> None:
        """Returns once the broker confirmed the command; ``NoWorker`` when it was unroutable.
        A connection lost meanwhile is replaced once and the command published again."""
        if reply:  # before publishing: the reply may come in while the confirm is awaited
            self._awaited[correlation_id] = Sent(routing_key, body, message_id)
        try:
            self._send(routing_key, body, message_id, correlation_id, reply=reply)
        except AMQPError as exc:
            if self._connection.is_open:
                self._awaited.pop(correlation_id, None)
                raise
            self._failover(exc)  # publishes the awaited ones again, this one among them
            if not reply:
                self._send(routing_key, body, message_id, correlation_id, reply=False)

    def _send(
        self, routing_key: str, body: bytes, message_id: str, correlation_id: str, *, reply: bool
    ) -> None:
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
            self._awaited.pop(correlation_id, None)
            raise NoWorker(
                "the command could not be routed: start `subreq worker` once so it declares "
                "the subreq.commands queue"
            ) from None

    def _failover(self, lost: AMQPError) -> None:
        """A new connection (the first address that answers), and every command still
        awaiting its reply published again on it; raises when no address answers."""
        log.warning("%s lost the broker (%r); connecting again", self._name, lost)
        with contextlib.suppress(Exception):
            self._connection.close()
        self._open()
        self.failovers += 1
        log.info("%s connected to %s", self._name, where(self._connection))
        for correlation_id, sent in list(self._awaited.items()):
            self._send(sent.routing_key, sent.body, sent.message_id, correlation_id, reply=True)

    def wait(self, correlation_id: str, timeout: float) -> dict[str, Any]:
        """The reply to ``correlation_id``, or ``ReplyTimeout`` after ``timeout`` seconds;
        a lost connection is replaced (every address tried) until then."""
        deadline = time.monotonic() + timeout
        try:
            while correlation_id not in self._replies:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ReplyTimeout(
                        f"no reply to {correlation_id} within {timeout:g} s; the command may "
                        "still be processed: retry with the same message_id"
                    )
                try:
                    self._connection.process_data_events(time_limit=min(remaining, 0.1))
                except AMQPError as exc:
                    self._failover_until(exc, deadline)
            return self._replies.pop(correlation_id)
        finally:
            self._awaited.pop(correlation_id, None)

    def _failover_until(self, lost: AMQPError, deadline: float) -> None:
        while True:
            try:
                self._failover(lost)
                return
            except AMQPError as exc:
                if time.monotonic() + FAILOVER_PAUSE > deadline:
                    return  # the wait ends with its ReplyTimeout
                lost = exc
                time.sleep(FAILOVER_PAUSE)

    def close(self) -> None:
        if self._connection.is_open:
            self._connection.close()
