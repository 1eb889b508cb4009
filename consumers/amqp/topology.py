"""The contract's exchanges and queues, declared idempotently by every loop at its start.

The command queue is a quorum queue with a delivery limit and a
dead-letter exchange, because RabbitMQ 3.10 sets no limit by itself and a poison message
would otherwise loop forever.

The dead-letter queues are quorum queues too: on a cluster they live on every node, where
a classic queue lives on one, and while that node is down the broker refuses to declare
it (404 "home node ... is down"), which would keep every loop from reconnecting. A dead-
letter queue an earlier version declared as a classic queue is kept as it is (a queue's
type cannot change); ``subreq dlq`` empties it and ``rabbitmqctl delete_queue`` lets the
next start declare it anew.
"""

from __future__ import annotations

import logging

from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker

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

log = logging.getLogger(__name__)

QUORUM = {"x-queue-type": "quorum"}
PRECONDITION_FAILED = 406


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
    _dead_queue(channel, NOTIFICATIONS_DEAD_QUEUE)
    channel.queue_bind(NOTIFICATIONS_DEAD_QUEUE, NOTIFICATIONS_DEAD_EXCHANGE)
    channel.queue_delete(RETIRED_NOTIFICATIONS_QUEUE)


def _limited_queue(
    channel: BlockingChannel, queue: str, dead_exchange: str, dead_queue: str
) -> None:
    """A quorum queue whose over-delivered messages the broker moves to ``dead_queue``
    (through the fanout ``dead_exchange``, both declared first)."""
    channel.exchange_declare(dead_exchange, exchange_type="fanout", durable=True)
    _dead_queue(channel, dead_queue)
    channel.queue_bind(dead_queue, dead_exchange)
    channel.queue_declare(
        queue,
        durable=True,
        arguments={
            **QUORUM,
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": dead_exchange,
        },
    )


def _dead_queue(channel: BlockingChannel, queue: str) -> None:
    """``queue`` as a quorum queue; one declared classic by an earlier version is left as it
    is. The declare goes on a channel of its own, which the broker closes on a mismatch."""
    trial = channel.connection.channel()
    try:
        trial.queue_declare(queue, durable=True, arguments=QUORUM)
    except ChannelClosedByBroker as exc:
        if exc.reply_code != PRECONDITION_FAILED:
            raise
        log.warning(
            "%s is a classic queue, declared by an earlier version: on a cluster it lives on "
            "one node only (empty it with `subreq dlq`, delete it, and the next start declares "
            "it as a quorum queue)",
            queue,
        )
        return
    trial.close()
