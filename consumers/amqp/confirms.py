"""Publisher confirms, pipelined: a whole batch goes out, then one wait for all its confirms.

``BlockingChannel.basic_publish`` on a confirming channel waits for each message's
confirm, a round trip per event; an AMQP transaction costs the broker a commit per batch.
Here the batch is written to the socket in a few calls and the broker's acks (often one
``multiple`` ack for many messages) are collected as they come.
"""

from __future__ import annotations

from collections.abc import Callable

from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import ChannelClosed, NackError
from pika.frame import Method
from pika.spec import Basic, BasicProperties

WAIT_STEP = 0.05  # seconds of socket servicing between checks of the channel's state


class ConfirmingChannel:
    """A channel of ``connection`` in confirm mode, publishing without waiting per message."""

    def __init__(self, connection: BlockingConnection, channel: BlockingChannel) -> None:
        self.connection = connection
        self.channel = channel
        self._impl = channel._impl  # the non-blocking channel under every BlockingChannel
        self._published = 0  # the delivery tag of the last publish (the broker counts alike)
        self._unconfirmed: set[int] = set()
        self._refused = 0
        selected: list[Method] = []
        self._impl.confirm_delivery(ack_nack_callback=self._on_confirm, callback=selected.append)
        self._until(lambda: bool(selected))

    def publish(
        self, exchange: str, routing_key: str, body: bytes, properties: BasicProperties
    ) -> None:
        """Queue one message; the next wait writes it with the rest of the batch."""
        self._impl.basic_publish(
            exchange=exchange, routing_key=routing_key, body=body, properties=properties
        )
        self._published += 1
        self._unconfirmed.add(self._published)

    def wait(self) -> None:
        """Return once the broker confirmed everything published; raise ``NackError`` if it
        refused any of it, ``ChannelClosed`` if the channel went away meanwhile."""
        self._until(lambda: not self._unconfirmed)
        if self._refused:
            refused, self._refused = self._refused, 0
            raise NackError([f"the broker refused {refused} of the messages (basic.nack)"])

    def _on_confirm(self, frame: Method) -> None:
        method = frame.method
        assert isinstance(method, Basic.Ack | Basic.Nack)
        tag = method.delivery_tag
        done = {t for t in self._unconfirmed if t <= tag} if method.multiple else {tag}
        self._unconfirmed -= done
        if isinstance(method, Basic.Nack):
            self._refused += len(done)

    def _until(self, done: Callable[[], bool]) -> None:
        while not done():
            if not self.channel.is_open:
                raise ChannelClosed(0, "the channel closed while waiting for confirms")
            self.connection.process_data_events(time_limit=WAIT_STEP)
