"""Helpers for the end-to-end tests: a plain AMQP client, a look into the broker, workers.

The client here is deliberately plain pika (confirms, ``mandatory``, an exclusive reply
queue, standard properties and JSON), as a system written in any language would do it,
so the tests exercise the wire contract and not the project's own client.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import orjson
import pika
from pika.adapters.blocking_connection import BlockingConnection
from pika.exceptions import AMQPError
from pika.spec import Basic, BasicProperties
from sqlalchemy import func, select, text

from consumers.amqp.topology import declare_topology
from consumers.consumer import CommandConsumer
from consumers.worker import Worker, WorkerOptions
from tests.integration.helpers import account, member, wait_until
from workflow.app.outbox import backlog
from workflow.app.service import CommandService
from workflow.contract.names import (
    COMMANDS_EXCHANGE,
    COMMANDS_QUEUE,
    DEAD_QUEUE,
    EVENTS_EXCHANGE,
    NOTIFICATIONS_DEAD_QUEUE,
)
from workflow.domain.catalog import Catalog
from workflow.persistence.database import Database
from workflow.persistence.locks import account_lock_key
from workflow.persistence.tables import metadata
from workflow.settings import Settings

SUBREQ = Path(sys.executable).parent / "subreq"
"""The console script of the venv running the tests."""

SEATS = [{"type": "add_seats", "product": "support", "quantity": 5}]

T = TypeVar("T")


def vhost_of(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60
    )
    return done.stdout


def _connections(vhost: str) -> list[tuple[str, str]]:
    """(pid, client properties) of every connection of ``vhost``."""
    listing = rabbitmqctl(
        "--no-table-headers", "list_connections", "pid", "vhost", "client_properties"
    )
    found = []
    for line in listing.splitlines():
        pid, _, rest = line.partition("\t")
        conn_vhost, _, properties = rest.partition("\t")
        if conn_vhost == vhost:
            found.append((pid, properties))
    return found


def _named(properties: str, name: str) -> bool:
    return f'{{"connection_name","{name}"}}' in properties


def count_connections(vhost: str, name: str) -> int:
    """How many connections of ``vhost`` the clients named ``name``."""
    return sum(_named(properties, name) for _, properties in _connections(vhost))


def close_connections(vhost: str, name: str | None = None) -> int:
    """Force-close the broker connections of ``vhost`` (only those whose client named
    itself ``name``, when given), as a broker restart or a network cut would; returns
    how many were closed. Other vhosts on the node are left alone."""
    closed = 0
    for pid, properties in _connections(vhost):
        if name is not None and not _named(properties, name):
            continue
        with contextlib.suppress(subprocess.CalledProcessError):  # it may be gone already
            rabbitmqctl("close_connection", pid, "closed by the test suite")
            closed += 1
    return closed


def close_all_connections(vhost: str) -> None:
    """Every connection of ``vhost`` closed at once by the broker (other vhosts untouched)."""
    rabbitmqctl("close_all_connections", "--vhost", vhost, "closed by the test suite")


@dataclass(frozen=True)
class Message:
    routing_key: str
    properties: BasicProperties
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.properties.headers or {})

    @property
    def correlation_id(self) -> str | None:
        return self.properties.correlation_id  # type: ignore[no-any-return]


def _connect(url: str, name: str) -> BlockingConnection:
    params = pika.URLParameters(url)
    params.client_properties = {"connection_name": name}
    params.heartbeat = 0  # a test may leave it idle while it polls the database
    return pika.BlockingConnection(params)


class RawClient:
    """A command publisher with its own exclusive, server-named reply queue."""

    def __init__(self, url: str, name: str = "test-client") -> None:
        self.connection = _connect(url, name)
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.reply_queue: str = self.channel.queue_declare("", exclusive=True).method.queue
        self.replies: list[Message] = []
        self.channel.basic_consume(self.reply_queue, self._on_reply, auto_ack=True)

    def _on_reply(
        self, _ch: Any, method: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        self.replies.append(Message(method.routing_key, props, body))

    def publish(
        self,
        routing_key: str,
        body: bytes | dict[str, Any] | list[Any],
        *,
        message_id: str | None = None,
        correlation_id: str | None = None,
        reply: bool = True,
        headers: dict[str, Any] | None = None,
        content_type: str | None = "application/json",
    ) -> None:
        """Publish with broker confirm; ``mandatory`` so an unroutable command raises."""
        self.channel.basic_publish(
            COMMANDS_EXCHANGE,
            routing_key,
            body if isinstance(body, bytes) else orjson.dumps(body),
            BasicProperties(
                content_type=content_type,
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=message_id,
                correlation_id=correlation_id,
                reply_to=self.reply_queue if reply else None,
                headers=headers,
            ),
            mandatory=True,
        )

    def pump(self) -> None:
        self.connection.process_data_events(time_limit=0.05)

    def wait_replies(self, count: int, timeout: float = 15.0) -> list[Message]:
        wait_until(
            lambda: len(self.replies) >= count,
            timeout=timeout,
            what=f"{count} replies (got {len(self.replies)})",
            pump=self.pump,
        )
        return self.replies

    def replies_to(self, correlation_id: str) -> list[Message]:
        return [r for r in self.replies if r.correlation_id == correlation_id]

    def reply_to(self, correlation_id: str, timeout: float = 15.0) -> Message:
        return wait_until(
            lambda: next(iter(self.replies_to(correlation_id)), None),
            timeout=timeout,
            what=f"the reply to {correlation_id}",
            pump=self.pump,
        )

    def call(
        self, routing_key: str, body: dict[str, Any], *, message_id: str, correlation_id: str
    ) -> Message:
        self.publish(routing_key, body, message_id=message_id, correlation_id=correlation_id)
        return self.reply_to(correlation_id)

    def close(self) -> None:
        if self.connection.is_open:
            with contextlib.suppress(AMQPError):
                self.connection.close()


class Broker:
    """The test's own view of the vhost: topology, queue depths, dead letters, events."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.vhost = vhost_of(url)
        self._open()

    def _open(self) -> None:
        self.connection = _connect(self.url, "test-inspector")
        self.channel = self.connection.channel()
        declare_topology(self.channel)

    def reconnect(self) -> None:
        """After the test had the broker close every connection of the vhost."""
        self.close()
        self._open()

    def purge(self) -> None:
        """Empty the worker's queues, which earlier tests of the session may have filled."""
        for queue in (COMMANDS_QUEUE, DEAD_QUEUE, NOTIFICATIONS_DEAD_QUEUE):
            self.channel.queue_purge(queue)

    def depth(self, queue: str = COMMANDS_QUEUE) -> int:
        """Messages ready in ``queue`` (a dead consumer's unacked ones count again)."""
        return int(self.channel.queue_declare(queue, passive=True).method.message_count)

    def consumers(self, queue: str = COMMANDS_QUEUE) -> int:
        return int(self.channel.queue_declare(queue, passive=True).method.consumer_count)

    def drain(self, queue: str) -> list[Message]:
        """Every message ready in ``queue``, removed from it."""
        found = []
        while True:
            method, props, body = self.channel.basic_get(queue, auto_ack=True)
            if method is None:
                return found
            found.append(Message(method.routing_key, props, body))

    def collect(self, queue: str, count: int, timeout: float = 15.0) -> list[Message]:
        """Drain ``queue`` until at least ``count`` messages came, then what else is there
        after a short settle (so a duplicate arriving late is seen too)."""
        found: list[Message] = []

        def enough() -> bool:
            found.extend(self.drain(queue))
            return len(found) >= count

        wait_until(enough, timeout=timeout, what=f"{count} messages in {queue} ({len(found)})")
        self.connection.sleep(0.3)
        found.extend(self.drain(queue))
        return found

    def events_queue(self) -> str:
        """An exclusive queue receiving every event on ``subreq.events``."""
        name: str = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(name, EVENTS_EXCHANGE, routing_key="#")
        return name

    def close_connections(self, name: str | None = None) -> int:
        return close_connections(self.vhost, name)

    def count_connections(self, name: str) -> int:
        return count_connections(self.vhost, name)

    def close(self) -> None:
        if self.connection.is_open:
            with contextlib.suppress(AMQPError):
                self.connection.close()


# --- the database -------------------------------------------------------------------


def url_of(db: Database) -> str:
    return db.url.render_as_string(hide_password=False)


def count(db: Database, table: str, **equal: Any) -> int:
    t = metadata.tables[table]
    query = select(func.count()).select_from(t)
    for column, value in equal.items():
        query = query.where(t.c[column] == value)
    with db.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def unpublished(db: Database) -> int:
    """Outbox rows the relay has not published yet."""
    return backlog(db)[0]


def processed_keys(db: Database) -> list[str]:
    t = metadata.tables["processed_commands"]
    with db.engine.connect() as conn:
        return list(conn.execute(select(t.c.key)).scalars())


def seed_accounts(
    db: Database, catalog: Catalog, n: int, prefix: str = "acct", *, owner: bool = False
) -> list[str]:
    """``n`` online-assisted accounts, each with an admin ``<account>-admin`` (and an owner
    ``<account>-owner``); written straight through the service, not the broker, and
    without message ids so no idempotency record is left behind."""
    ids = [f"{prefix}-{i}" for i in range(n)]
    items: list[tuple[str, bytes, None]] = []
    for account_id in ids:
        items.append(("account.upsert", orjson.dumps(account(account_id)), None))
        items.append(
            (
                "member.upsert",
                orjson.dumps(member(f"{account_id}-admin", "admin", account_id)),
                None,
            )
        )
        if owner:
            items.append(
                (
                    "member.upsert",
                    orjson.dumps(member(f"{account_id}-owner", "owner", account_id)),
                    None,
                )
            )
    outcomes = CommandService(db, catalog).handle_batch(items)
    assert all(o.json()["ok"] for o in outcomes), [o.json() for o in outcomes if not o.json()["ok"]]
    return ids


def publish_submits(client: RawClient, accounts: list[str], ids: list[str]) -> None:
    """One ``request.submit`` per account, each with its own message id."""
    for account_id, message_id in zip(accounts, ids, strict=True):
        client.publish(
            "request.submit",
            submit_body(account_id),
            message_id=message_id,
            correlation_id=message_id,
        )


@contextmanager
def account_locked(db: Database, account_id: str) -> Iterator[None]:
    """Holds the account's row lock: a worker reaching a command of that account waits,
    its batch in hand, however fast it is; it goes on once the block is left."""
    with db.engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": account_lock_key(account_id)})
        yield
        conn.rollback()


def submit_body(account_id: str, actor: str = "admin", **extra: Any) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "actor_id": f"{account_id}-{actor}",
        "changes": SEATS,
        **extra,
    }


# --- workers --------------------------------------------------------------------------


@contextmanager
def running_worker(amqp_url: str, database_url: str, **options: Any) -> Iterator[Worker]:
    """A ``Worker`` in this process, stopped (finishing its work in hand) at the end."""
    worker = Worker(
        Settings(amqp_url=amqp_url, database_url=database_url), WorkerOptions(**options)
    )
    worker.start()
    try:
        assert worker.wait_ready(15), "the in-process worker did not connect"
        yield worker
    finally:
        worker.stop()
        worker.join(20)


@contextmanager
def running_consumer(consumer: CommandConsumer) -> Iterator[CommandConsumer]:
    """A bare ``CommandConsumer`` on a thread, for tests that set its hooks and limits."""
    thread = threading.Thread(target=consumer.run, name="test-consumer", daemon=True)
    thread.start()
    try:
        assert consumer.ready.wait(15), "the consumer did not connect"
        yield consumer
    finally:
        consumer.stop.set()
        thread.join(20)
        assert not thread.is_alive(), "the consumer did not stop"


class WorkerProcess:
    """``subreq worker`` as its own process, output in a log file for diagnostics."""

    def __init__(
        self, amqp_url: str, database_url: str, workdir: Path, name: str, *args: str
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.command = [str(SUBREQ), "worker", *args]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SUBREQ_")}
        self.env |= {"SUBREQ_AMQP_URL": amqp_url, "SUBREQ_DATABASE_URL": database_url}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def send_signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL and reap (idempotent): used by teardown whatever happened."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)
