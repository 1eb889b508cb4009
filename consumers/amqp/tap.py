"""A look at the events on the broker, for ``subreq demo``: what the relay published."""

from __future__ import annotations

import time
from typing import Any

import orjson
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from consumers.amqp.connection import connect
from workflow.contract.names import EVENTS_EXCHANGE


class EventTap:
    """A private queue bound to every event, read between the demo's steps."""

    def __init__(self, url: str) -> None:
        self.connection = connect(url, name="subreq-demo-events")
        self.channel = self.connection.channel()
        self.channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
        queue = self.channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self.channel.queue_bind(queue, EVENTS_EXCHANGE, routing_key="#")
        self.seen: list[dict[str, Any]] = []
        self.channel.basic_consume(queue, self._on_event, auto_ack=True)

    def _on_event(
        self, _ch: BlockingChannel, _m: Basic.Deliver, _p: BasicProperties, body: bytes
    ) -> None:
        self.seen.append(orjson.loads(body))

    def drain(self, quiet: float = 0.3, limit: float = 3.0) -> list[dict[str, Any]]:
        """Events until none came for ``quiet`` seconds (the relay publishes in ms)."""
        start = last = time.monotonic()
        count = len(self.seen)
        while time.monotonic() - last < quiet and time.monotonic() - start < limit:
            self.connection.process_data_events(time_limit=0.05)
            if len(self.seen) != count:
                count, last = len(self.seen), time.monotonic()
        events, self.seen = self.seen, []
        return events

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()
