"""A stand-in for ``consumers.amqp.publishing.Confirmed`` over a fake channel: replies go
to the channel's ``basic_publish``, and each wait for confirms is recorded."""

from __future__ import annotations

from typing import Any


class Replies:
    def __init__(self, channel: Any, calls: list[tuple[Any, ...]] | None = None) -> None:
        self.channel = channel
        self.calls = calls if calls is not None else []

    def publish(self, exchange: str, routing_key: str, body: bytes, props: Any) -> None:
        self.channel.basic_publish(exchange, routing_key, body, props)

    def wait(self) -> None:
        self.calls.append(("replies", "wait"))
