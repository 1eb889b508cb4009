"""Connections: parameters from the settings, probes, and the one reconnect loop.

``SUBREQ_AMQP_URL`` may name several brokers, the nodes of one RabbitMQ cluster: every
connection goes to the first that answers, in the order given (pika's connection list).
pika has no automatic reconnect; every long-lived connection of subreq goes through
``run_connected``, which retries with ``Backoff`` (each attempt trying every address
again, so a dead node is left for the next) and tells its owner what to forget.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import pika
from pika.adapters.blocking_connection import BlockingConnection
from pika.exceptions import AMQPError

from consumers.amqp import alarms
from workflow.errors import ConfigurationError
from workflow.settings import amqp_addresses

log = logging.getLogger(__name__)

Connection: TypeAlias = BlockingConnection
"""pika's blocking connection, for annotations outside this package."""

HEARTBEAT_SECONDS = 30


def parameters(url: str, *, heartbeat: int = HEARTBEAT_SECONDS) -> list[pika.URLParameters]:
    """Connection parameters of every address of ``SUBREQ_AMQP_URL``, in its order, or a
    ConfigurationError naming the variable."""
    try:
        addresses = amqp_addresses(url)
    except ValueError as exc:
        raise ConfigurationError(f"SUBREQ_AMQP_URL: {exc}") from None
    found = []
    for address in addresses:
        try:
            params = pika.URLParameters(address)
        except Exception as exc:
            raise ConfigurationError(
                f"SUBREQ_AMQP_URL is not a usable AMQP URL: {address.split('@')[-1]}: {exc}"
            ) from None
        params.heartbeat = heartbeat
        params.blocked_connection_timeout = alarms.BLOCKED_TIMEOUT
        params.connection_attempts = 1
        params.socket_timeout = 5
        params.client_properties = {"connection_name": "subreq"}
        found.append(params)
    return found


def connect(url: str, *, name: str = "subreq", timeout: float | None = None) -> BlockingConnection:
    """A blocking connection named ``name`` (shown by ``rabbitmqctl list_connections``) to
    the first address of ``url`` that answers.

    ``timeout`` bounds the whole handshake (socket and AMQP) of each address, for probes
    that must answer quickly, such as ``subreq health``.
    """
    candidates = parameters(url)
    for params in candidates:
        params.client_properties = {"connection_name": name}
        if timeout is not None:
            params.socket_timeout = timeout
            params.stack_timeout = timeout
    connection = BlockingConnection(candidates if len(candidates) > 1 else candidates[0])
    alarms.watch(connection, name)
    return connection


def where(connection: BlockingConnection) -> str:
    """``host:port vhost V`` of the address ``connection`` went to."""
    params = connection._impl.params  # the parameters of the address that answered
    return f"{params.host}:{params.port} vhost {params.virtual_host}"


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
        if backoff.current:  # a reconnect: say where to, the node may be another
            log.info("%s connected to %s", name, where(connection))
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
            alarms.closed(name)
            if connection.is_open:
                with contextlib.suppress(AMQPError):
                    connection.close()
