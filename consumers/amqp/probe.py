"""The broker's half of ``subreq health``: does a connection open, is the command queue there.

Each probe gives up after ``timeout`` seconds, so a dead broker is reported, not waited for.
"""

from __future__ import annotations

import contextlib
import logging
from urllib.parse import unquote, urlsplit

from pika.exceptions import AMQPError, ChannelClosedByBroker

from consumers.amqp.connection import connect, where
from workflow.contract.names import COMMANDS_QUEUE
from workflow.errors import ConfigurationError
from workflow.persistence.probe import Check

DEFAULT_TIMEOUT = 3.0
"""Seconds each probe may take; well inside a health check's usual 10 s."""

NOT_FOUND = 404


def _vhost(address: str) -> str:
    path = urlsplit(address.strip()).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def broker_where(url: str) -> str:
    """Host, port and vhost of each address of ``SUBREQ_AMQP_URL``, without credentials."""
    found = []
    for address in url.split(","):
        parts = urlsplit(address.strip())
        found.append(f"{parts.hostname}:{parts.port or 5672} vhost {_vhost(address)}")
    return ", ".join(found)


def broker_checks(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> list[Check]:
    """``broker`` (a connection opens) and ``command queue`` (``subreq.commands`` exists)."""
    pika_logger = logging.getLogger("pika")
    level = pika_logger.level
    pika_logger.setLevel(logging.CRITICAL)  # the line below says it; no pika traceback
    try:
        try:
            connection = connect(url, name="subreq-health", timeout=timeout)
        except ConfigurationError as exc:
            return [Check("broker", False, str(exc)), _skipped("command queue")]
        except Exception as exc:  # pika's handshake timeout is no AMQPError: catch them all
            detail = f"{broker_where(url)} unreachable: {exc!r}"
            return [Check("broker", False, detail), _skipped("command queue")]
        try:
            reachable = Check("broker", True, f"{where(connection)} reachable")
            try:
                declared = connection.channel().queue_declare(COMMANDS_QUEUE, passive=True)
            except AMQPError as exc:
                if isinstance(exc, ChannelClosedByBroker) and exc.reply_code == NOT_FOUND:
                    detail = f"{COMMANDS_QUEUE} is not declared: start `subreq worker` once"
                else:
                    detail = f"cannot check {COMMANDS_QUEUE}: {exc!r}"
                return [reachable, Check("command queue", False, detail)]
            method = declared.method
            detail = (
                f"{COMMANDS_QUEUE} declared ({method.message_count} ready, "
                f"{method.consumer_count} consumers)"
            )
            return [reachable, Check("command queue", True, detail)]
        finally:
            with contextlib.suppress(AMQPError):
                connection.close()
    finally:
        pika_logger.setLevel(level)


def _skipped(name: str) -> Check:
    return Check(name, False, "not checked: broker unreachable")
