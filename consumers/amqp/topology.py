"""The contract's exchanges and queues, declared idempotently by every loop at its start.

The command and notification queues are quorum queues with a delivery limit and a
dead-letter exchange, because RabbitMQ 3.10 sets no limit by itself and a poison message
would otherwise loop forever.
"""

from __future__ import annotations

from pika.adapters.blocking_connection import BlockingChannel

from workflow.contract.names import (
    COMMANDS_EXCHANGE,
    COMMANDS_QUEUE,
    DEAD_EXCHANGE,
    DEAD_QUEUE,
    DELIVERY_LIMIT,
    EVENTS_EXCHANGE,
    NOTIFICATION_REQUESTED,
    NOTIFICATIONS_DEAD_EXCHANGE,
    NOTIFICATIONS_DEAD_QUEUE,
    NOTIFICATIONS_QUEUE,
)


def declare_topology(channel: BlockingChannel) -> None:
    """Everything of the contract, declared idempotently at every start."""
    channel.exchange_declare(COMMANDS_EXCHANGE, exchange_type="topic", durable=True)
    channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
    _limited_queue(channel, COMMANDS_QUEUE, DEAD_EXCHANGE, DEAD_QUEUE)
    channel.queue_bind(COMMANDS_QUEUE, COMMANDS_EXCHANGE, routing_key="#")
    declare_notification_queues(channel)


def declare_notification_queues(channel: BlockingChannel) -> None:
    """The notifier's queue, declared by every loop that declares the topology: the relay
    must never publish a ``notification.requested`` before the queue that keeps it exists."""
    _limited_queue(
        channel, NOTIFICATIONS_QUEUE, NOTIFICATIONS_DEAD_EXCHANGE, NOTIFICATIONS_DEAD_QUEUE
    )
    channel.queue_bind(NOTIFICATIONS_QUEUE, EVENTS_EXCHANGE, routing_key=NOTIFICATION_REQUESTED)


def _limited_queue(
    channel: BlockingChannel, queue: str, dead_exchange: str, dead_queue: str
) -> None:
    """A quorum queue whose over-delivered messages the broker moves to ``dead_queue``
    (through the fanout ``dead_exchange``, both declared first)."""
    channel.exchange_declare(dead_exchange, exchange_type="fanout", durable=True)
    channel.queue_declare(dead_queue, durable=True)
    channel.queue_bind(dead_queue, dead_exchange)
    channel.queue_declare(
        queue,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": dead_exchange,
        },
    )
