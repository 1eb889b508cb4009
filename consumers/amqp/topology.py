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
    channel.exchange_declare(DEAD_EXCHANGE, exchange_type="fanout", durable=True)
    channel.queue_declare(DEAD_QUEUE, durable=True)
    channel.queue_bind(DEAD_QUEUE, DEAD_EXCHANGE)
    channel.queue_declare(
        COMMANDS_QUEUE,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": DEAD_EXCHANGE,
        },
    )
    channel.queue_bind(COMMANDS_QUEUE, COMMANDS_EXCHANGE, routing_key="#")
    declare_notification_queues(channel)


def declare_notification_queues(channel: BlockingChannel) -> None:
    """The notifier's queue, declared by every loop that declares the topology: the relay
    must never publish a ``notification.requested`` before the queue that keeps it exists."""
    channel.exchange_declare(NOTIFICATIONS_DEAD_EXCHANGE, exchange_type="fanout", durable=True)
    channel.queue_declare(NOTIFICATIONS_DEAD_QUEUE, durable=True)
    channel.queue_bind(NOTIFICATIONS_DEAD_QUEUE, NOTIFICATIONS_DEAD_EXCHANGE)
    channel.queue_declare(
        NOTIFICATIONS_QUEUE,
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": NOTIFICATIONS_DEAD_EXCHANGE,
        },
    )
    channel.queue_bind(NOTIFICATIONS_QUEUE, EVENTS_EXCHANGE, routing_key=NOTIFICATION_REQUESTED)
