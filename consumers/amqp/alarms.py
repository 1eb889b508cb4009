"""Broker resource alarms as a connection sees them: blocked, then unblocked.

When a RabbitMQ node runs low on memory or disk it blocks every publishing connection of
the cluster (``connection.blocked``) until the alarm clears (``connection.unblocked``).
Nothing is lost meanwhile: a blocked worker just stops publishing replies and events,
and with them its acknowledgements; it says so once in its log when blocked and once
when unblocked, and ``subreq_broker_blocked`` (``consumers.metrics``) reads the state
kept here. A connection still blocked after ``BLOCKED_TIMEOUT`` seconds is closed by
pika and opened again, with what it held redelivered (idempotency makes that harmless).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pika.adapters.blocking_connection import BlockingConnection

log = logging.getLogger(__name__)

BLOCKED_TIMEOUT = 60
"""Seconds a blocked connection is kept before pika closes it (``ConnectionBlockedTimeout``)."""

_lock = threading.Lock()
_blocked: dict[str, bool] = {}


def watch(connection: BlockingConnection, name: str) -> None:
    """Log and record when the broker blocks and unblocks ``connection`` (named ``name``)."""

    def on_blocked(_connection: Any, frame: Any) -> None:
        reason = getattr(frame.method, "reason", "") or "no reason given"
        with _lock:
            _blocked[name] = True
        log.warning(
            "%s: the broker blocks publishing (%s); waiting for the alarm to clear", name, reason
        )

    def on_unblocked(_connection: Any, _frame: Any) -> None:
        with _lock:
            _blocked[name] = False
        log.info("%s: the broker unblocked publishing; resuming", name)

    # On the connection under the blocking one: its callbacks run as the frame arrives,
    # also while a blocked publish or confirm is awaited (the blocking connection would
    # hold them until its next top-level process_data_events, after the alarm).
    connection._impl.add_on_connection_blocked_callback(on_blocked)
    connection._impl.add_on_connection_unblocked_callback(on_unblocked)
    with _lock:
        _blocked.setdefault(name, False)


def closed(name: str) -> None:
    """``name``'s connection is gone: a new one starts unblocked (the broker says again)."""
    with _lock:
        if _blocked.get(name):
            _blocked[name] = False
            log.info("%s: the blocked connection was closed", name)


def is_blocked(name: str) -> bool:
    """Whether the broker blocks ``name``'s connection now."""
    with _lock:
        return _blocked.get(name, False)


def blocked() -> dict[str, bool]:
    """Every connection name watched in this process, and whether the broker blocks it."""
    with _lock:
        return dict(_blocked)
