"""Running notifiers against the package's vhost, and reading what they left behind."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import func, select

from consumers.amqp.connection import connect
from consumers.amqp.topology import declare_topology
from consumers.notifier import RetryPolicy
from consumers.worker import Worker, WorkerOptions
from workflow.contract.examples import EVENT_EXAMPLES
from workflow.contract.names import NOTIFICATION_REQUESTED, NOTIFICATIONS_DEAD_QUEUE
from workflow.persistence.database import Database
from workflow.persistence.tables import notification_deliveries
from workflow.settings import Settings

T = TypeVar("T")

FAST_RETRY = RetryPolicy(attempts=40, first=0.1, ceiling=0.5)


def url_of(db: Database) -> str:
    return db.url.render_as_string(hide_password=False)


@contextmanager
def running(
    amqp_url: str, db: Database, smtp_url: str | None, *, connections: int = 4, **options: Any
) -> Iterator[Worker]:
    """A worker with the notifier (and, unless told otherwise, the relay) in this process."""
    settings = Settings(
        amqp_url=amqp_url,
        database_url=url_of(db),
        smtp_url=smtp_url,
        smtp_connections=connections,
    )
    defaults: dict[str, Any] = {
        "consume": False,
        "relay": True,
        "notify": True,
        "sweep": False,
        "notify_retry": FAST_RETRY,
    }
    worker = Worker(settings, WorkerOptions(**{**defaults, **options}))
    worker.start()
    try:
        assert worker.wait_ready(15), "the worker did not connect"
        yield worker
    finally:
        worker.stop()
        worker.join(20)


class Queues:
    """The notifier's dead-letter queue in the test vhost, emptied for each test."""

    def __init__(self, url: str) -> None:
        self.connection = connect(url, name="test-notifications")
        self.channel = self.connection.channel()
        declare_topology(self.channel)
        self.channel.queue_purge(NOTIFICATIONS_DEAD_QUEUE)

    def dead_letters(self) -> list[tuple[bytes, dict[str, Any]]]:
        found = []
        while True:
            method, props, body = self.channel.basic_get(NOTIFICATIONS_DEAD_QUEUE, auto_ack=True)
            if method is None:
                return found
            found.append((body, dict(props.headers or {})))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.close()


def request_email(
    db: Database,
    notification_id: str,
    email: str,
    *,
    name: str = "Olivia Owner",
    account_id: str = "acme",
    **data: Any,
) -> None:
    """A ``notification.requested`` written as a command writes it (the example submit's
    notice, to ``email``), so its delivery record is due at once."""
    notice = copy.deepcopy(EVENT_EXAMPLES[NOTIFICATION_REQUESTED]["data"])
    notice.update(notification_id=notification_id, **data)
    notice["recipient"] = {"user_id": "u", "email": email, "name": name}
    with db.store(lock=False) as store:
        store.add_event(NOTIFICATION_REQUESTED, datetime.now(UTC), account_id, notice, None)


def delivery_counts(db: Database) -> dict[str, int]:
    t = notification_deliveries
    with db.engine.connect() as conn:
        rows = conn.execute(select(t.c.status, func.count()).group_by(t.c.status))
        return {row[0]: row[1] for row in rows}
