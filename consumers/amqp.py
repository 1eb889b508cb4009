"""Connections and topology: the one place that knows how subreq sits on RabbitMQ.

Names are the wire contract's. The command queue is a quorum queue with a
delivery limit and a dead-letter exchange, because RabbitMQ 3.10 sets no limit
by itself and a poison message would otherwise loop forever.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pika
import pika.data
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.adapters.utils.io_services_utils import _AsyncTransportBase
from pika.exceptions import AMQPError
from pika.spec import BasicProperties

from workflow.errors import ConfigurationError

log = logging.getLogger(__name__)

_decode_value = pika.data.decode_value


def _tolerant_decode_value(encoded: bytes, offset: int) -> tuple[Any, int]:
    """pika turns a header timestamp into a datetime and raises on one past year 9999,
    which drops the connection on every delivery of that message: keep it an int."""
    if encoded[offset : offset + 1] == b"T":
        try:
            return _decode_value(encoded, offset)  # type: ignore[no-any-return]
        except (OverflowError, ValueError, OSError):
            return struct.unpack_from(">Q", encoded, offset + 1)[0], offset + 9
    return _decode_value(encoded, offset)  # type: ignore[no-any-return]


pika.data.decode_value = _tolerant_decode_value

COALESCE_BYTES = 256 * 1024
_produce = _AsyncTransportBase._produce


def _coalescing_produce(self: Any) -> None:
    """pika queues every frame as its own chunk and sends chunk by chunk: three ``send()``
    calls per message (method, header, body), a tenth of a busy worker's time. Joining
    the queued chunks (up to ``COALESCE_BYTES`` at a time) sends a batch of replies or
    events in a few calls; the bytes and their order are unchanged."""
    chunks = self._tx_buffers
    if len(chunks) > 1:
        groups: list[bytes] = []
        group: list[bytes] = []
        size = 0
        for chunk in chunks:
            group.append(chunk)
            size += len(chunk)
            if size >= COALESCE_BYTES:
                groups.append(b"".join(group))
                group, size = [], 0
        if group:
            groups.append(b"".join(group))
        chunks.clear()
        chunks.extend(groups)
    _produce(self)


_AsyncTransportBase._produce = _coalescing_produce  # type: ignore[method-assign]

COMMANDS_EXCHANGE = "subreq.commands"
EVENTS_EXCHANGE = "subreq.events"
COMMANDS_QUEUE = "subreq.commands"
DEAD_QUEUE = "subreq.commands.dead"
DEAD_EXCHANGE = "subreq.commands.dlx"  # where the broker itself sends over-delivered commands

NOTIFICATIONS_QUEUE = "subreq.notifications"
"""The email notifier's own queue: every ``notification.requested`` event (R16-R18)."""
NOTIFICATIONS_DEAD_QUEUE = "subreq.notifications.dead"
NOTIFICATIONS_DEAD_EXCHANGE = "subreq.notifications.dlx"
NOTIFICATION_REQUESTED = "notification.requested"

ERROR_HEADER = "x-subreq-error"
DELIVERY_LIMIT = 20
"""Broker-side backstop (crash loops); the consumer dead-letters with a reason sooner."""

HEARTBEAT_SECONDS = 30


def parameters(url: str, *, heartbeat: int = HEARTBEAT_SECONDS) -> pika.URLParameters:
    """Connection parameters from ``SUBREQ_AMQP_URL``, or a ConfigurationError naming it."""
    if not url.startswith(("amqp://", "amqps://")):
        raise ConfigurationError(
            f"SUBREQ_AMQP_URL must start with amqp:// or amqps://, got {url!r}"
        )
    try:
        params = pika.URLParameters(url)
    except Exception as exc:
        raise ConfigurationError(f"SUBREQ_AMQP_URL is not a usable AMQP URL: {exc}") from None
    params.heartbeat = heartbeat
    params.blocked_connection_timeout = 60
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.client_properties = {"connection_name": "subreq"}
    return params


def connect(url: str, *, name: str = "subreq", timeout: float | None = None) -> BlockingConnection:
    """A blocking connection named ``name`` (shown by ``rabbitmqctl list_connections``).

    ``timeout`` bounds the whole handshake (socket and AMQP), for probes that must answer
    quickly, such as ``subreq health``.
    """
    params = parameters(url)
    params.client_properties = {"connection_name": name}
    if timeout is not None:
        params.socket_timeout = timeout
        params.stack_timeout = timeout
    return BlockingConnection(params)


def unreachable(url: str, *, timeout: float = 5.0) -> str | None:
    """Why the broker cannot be reached now, or ``None`` when it can. Any failure counts:
    pika's handshake timeout is no AMQPError. A bad URL still raises ConfigurationError."""
    try:
        connect(url, name="subreq-probe", timeout=timeout).close()
    except ConfigurationError:
        raise
    except Exception as exc:
        return f"{exc.__class__.__name__}: {exc}".rstrip(": ")
    return None


@dataclass
class Backoff:
    """Exponential backoff with a ceiling, reset after a success."""

    first: float = 0.2
    ceiling: float = 10.0
    current: float = 0.0

    def next(self) -> float:
        self.current = self.first if not self.current else min(self.current * 2, self.ceiling)
        return self.current

    def reset(self) -> None:
        self.current = 0.0


def connect_with_retry(
    url: str,
    *,
    name: str,
    stopping: Callable[[], bool],
    backoff: Backoff | None = None,
) -> BlockingConnection | None:
    """Keep trying until connected, or ``None`` once ``stopping()`` says so."""
    backoff = backoff or Backoff()
    while not stopping():
        try:
            connection = connect(url, name=name)
        except AMQPError as exc:
            delay = backoff.next()
            log.warning("broker unreachable (%s); retrying in %.1fs", exc.__class__.__name__, delay)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not stopping():
                time.sleep(0.05)
            continue
        backoff.reset()
        return connection
    return None


def run_connected(
    url: str,
    *,
    name: str,
    stop: threading.Event,
    session: Callable[[BlockingConnection], None],
    after: Callable[[], None],
) -> None:
    """Run ``session`` on a fresh connection until ``stop`` is set, reconnecting with
    backoff whenever the broker drops it; ``after`` forgets what the dead connection held."""
    backoff = Backoff()
    while not stop.is_set():
        connection = connect_with_retry(url, name=name, stopping=stop.is_set, backoff=backoff)
        if connection is None:
            return
        try:
            session(connection)
        except AMQPError as exc:
            log.warning("%s lost the broker (%r); reconnecting", name, exc)
            time.sleep(backoff.next())
        except Exception:  # a bug must not silently end the loop: start a new session
            log.exception("%s failed; starting over on a new connection", name)
            time.sleep(backoff.next())
        finally:
            after()
            if connection.is_open:
                with contextlib.suppress(AMQPError):
                    connection.close()


def publish_queued(
    channel: BlockingChannel,
    exchange: str,
    routing_key: str,
    body: bytes,
    properties: BasicProperties,
) -> None:
    """Publish without writing the socket yet: the channel's next blocking call (an ack, a
    ``tx.commit``, ``process_data_events``) sends a whole batch in a few ``send()`` calls,
    where ``BlockingChannel.basic_publish`` makes one per message. Not for a channel in
    confirm mode, whose publishes must wait for their confirms."""
    channel._impl.basic_publish(  # the non-blocking channel under every BlockingChannel
        exchange=exchange, routing_key=routing_key, body=body, properties=properties
    )


def copy_properties(props: BasicProperties, headers: dict[str, Any]) -> BasicProperties:
    """The original properties, persistent, with ``headers``: for dead letters and replays."""
    return BasicProperties(
        content_type=props.content_type,
        content_encoding=props.content_encoding,
        headers=headers,
        delivery_mode=pika.DeliveryMode.Persistent,
        priority=props.priority,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        message_id=props.message_id,
        timestamp=props.timestamp,
        type=props.type,
        app_id=props.app_id,
    )


def bury(
    channel: BlockingChannel,
    queue: str,
    body: bytes,
    props: BasicProperties,
    reason: str,
    **headers: Any,
) -> None:
    """A copy in a dead-letter queue with the reason in ``x-subreq-error``; on a confirming
    channel this returns only once the broker has it."""
    kept = dict(props.headers or {})
    kept[ERROR_HEADER] = reason[:1000]
    kept.update(headers)
    try:
        channel.basic_publish("", queue, body, copy_properties(props, kept), mandatory=True)
    except (struct.error, OverflowError, TypeError, ValueError):
        # A header pika decoded but cannot encode again (e.g. a double beyond 2**63):
        # the copy keeps the body, the reason and the message's identity, not the headers.
        ours = {ERROR_HEADER: reason[:1000], "x-subreq-dropped-headers": True, **headers}
        channel.basic_publish("", queue, body, copy_properties(props, ours), mandatory=True)


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
