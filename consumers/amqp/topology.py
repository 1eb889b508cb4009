"""The contract's exchanges and queues, declared idempotently by every loop at its start.

The command queue is a quorum queue with a delivery limit and a
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
    NOTIFICATIONS_DEAD_EXCHANGE,
    NOTIFICATIONS_DEAD_QUEUE,
    RETIRED_NOTIFICATIONS_QUEUE,
)


def declare_topology(channel: BlockingChannel) -> None:
    """Everything of the contract, declared idempotently at every start."""
    channel.exchange_declare(COMMANDS_EXCHANGE, exchange_type="topic", durable=True)
    channel.exchange_declare(EVENTS_EXCHANGE, exchange_type="topic", durable=True)
    _limited_queue(channel, COMMANDS_QUEUE, DEAD_EXCHANGE, DEAD_QUEUE)
    channel.queue_bind(COMMANDS_QUEUE, COMMANDS_EXCHANGE, routing_key="#")
    declare_notification_dead_letters(channel)


def declare_notification_dead_letters(channel: BlockingChannel) -> None:
    """Where the notifier copies the notifications it gave up. The notifier reads its work
    from the database, so nothing is bound to ``notification.requested`` for it; the queue
    an earlier version fed that way is deleted, or it would fill forever."""
    channel.exchange_declare(NOTIFICATIONS_DEAD_EXCHANGE, exchange_type="fanout", durable=True)
    channel.queue_declare(NOTIFICATIONS_DEAD_QUEUE, durable=True)
    channel.queue_bind(NOTIFICATIONS_DEAD_QUEUE, NOTIFICATIONS_DEAD_EXCHANGE)
    channel.queue_delete(RETIRED_NOTIFICATIONS_QUEUE)


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
