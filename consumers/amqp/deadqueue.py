"""The broker's half of ``subreq dlq``: ``subreq.commands.dead`` held, read and republished.

Every message read is held unacknowledged on the connection; whatever is not acknowledged
is requeued, in order, when reading ends (or by the broker, should the connection drop).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import contextmanager

from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError, NackError, UnroutableError
from pika.spec import BasicProperties

from consumers.amqp.connection import connect
from consumers.amqp.errors import DeadLetterError
from workflow.contract.names import COMMANDS_EXCHANGE, DEAD_QUEUE

IDLE_SECONDS = 1.0
"""How long to wait for one more delivery before concluding that the queue is read."""

MAX_PREFETCH = 65535  # prefetch_count is a 16-bit field; 0 means unlimited

Held = tuple[int, str, BasicProperties, bytes]
"""A dead letter held unacknowledged: delivery tag, routing key, properties, body."""


class DeadQueue:
    """The dead-letter queue on one channel, and how many dead letters were ready."""

    def __init__(self, channel: BlockingChannel, ready: int) -> None:
        self.channel = channel
        self.ready = ready

    def held(self, limit: int | None) -> Generator[Held, None, None]:
        """Deliveries up to ``limit`` of the ready ones, held unacknowledged; whatever the
        caller leaves unacknowledged is requeued, in order, when it finishes."""
        wanted = self.ready if limit is None else min(self.ready, limit)
        if wanted == 0:
            return
        channel = self.channel
        channel.basic_qos(prefetch_count=wanted if wanted <= MAX_PREFETCH else 0)
        seen = 0
        try:
            for method, properties, body in channel.consume(
                DEAD_QUEUE, inactivity_timeout=IDLE_SECONDS
            ):
                if method is None:  # fewer than counted: someone else took some
                    break
                yield method.delivery_tag, method.routing_key, properties, body
                seen += 1
                if seen >= wanted:
                    break
        finally:
            if channel.is_open:
                channel.cancel()  # requeues deliveries prefetched but not yet yielded
                channel.basic_nack(delivery_tag=0, multiple=True, requeue=True)

    def confirm(self) -> None:
        """Publisher confirms from now on: ``republish`` returns once the broker has it."""
        self.channel.confirm_delivery()

    def republish(self, routing_key: str, body: bytes, properties: BasicProperties) -> str | None:
        """The command again on ``subreq.commands``; why the broker did not take it, if so."""
        try:
            self.channel.basic_publish(
                COMMANDS_EXCHANGE, routing_key, body, properties, mandatory=True
            )
        except UnroutableError:
            reason = f"{COMMANDS_EXCHANGE} routed {routing_key} to no queue"
            return f"{reason}: start `subreq worker` once"
        except NackError:
            return f"the broker refused {properties.message_id or 'a message'}"
        return None

    def ack(self, tag: int) -> None:
        self.channel.basic_ack(tag)


@contextmanager
def dead_queue(url: str) -> Iterator[DeadQueue]:
    """The dead-letter queue on a fresh connection, closed (requeueing what is held) at the
    end; ``DeadLetterError`` when the broker or the queue is not there."""
    try:
        connection = connect(url, name="subreq-dlq")
    except Exception as exc:  # pika's handshake timeout is no AMQPError
        raise DeadLetterError(f"cannot reach the broker at SUBREQ_AMQP_URL: {exc!r}") from None
    try:
        channel = connection.channel()
        try:
            ready = channel.queue_declare(DEAD_QUEUE, passive=True).method.message_count
        except AMQPError:
            raise DeadLetterError(
                f"{DEAD_QUEUE} is not declared: start `subreq worker` once"
            ) from None
        yield DeadQueue(channel, ready)
    finally:
        if connection.is_open:
            connection.close()  # anything still unacknowledged goes back to the queue
