"""The ceiling: raw pika + psycopg (or sqlite3) doing subreq's writes, without subreq's code.

It consumes the same quorum queue with the same load, and per command does what subreq
does, minus the framework: the idempotency lookup; for ``request.submit`` the account
(locked), the admin check and the pending check, then INSERTs of the request, its history
row, two outbox events (``request.submitted``, ``notification.requested``) and the stored
reply; for ``request.decide`` the request and its account (locked), the owner check, an
UPDATE of the request and of the seats, then INSERTs of a history row, three events
(``request.approved``, ``subscription.changed``, ``notification.requested``) and the stored
reply. Event and reply bodies are built to the contract's shapes and sizes.

Up to ``--batch`` deliveries form ONE transaction, with set-based reads and ``executemany``
writes; replies are published after the commit, then one ``basic_ack(multiple=True)``.
A relay thread publishes the outbox with publisher confirms and marks the rows published in
the transaction that claimed them, as subreq's relay does, but pipelines the confirms: it
publishes up to 500 events, then waits once for all their confirms, where a
``BlockingChannel`` in confirm mode waits for each (one round trip per event, and in a
busy multi-threaded process each of those waits may also wait for the GIL).

Run as its own process (so its CPU and memory can be measured like the worker's)::

    SUBREQ_AMQP_URL=... SUBREQ_DATABASE_URL=... python -m benchmarks.ceiling [--batch 100]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pika
import psycopg
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.spec import Basic, BasicProperties

from consumers.amqp import patches
from workflow.contract.names import (
    COMMANDS_EXCHANGE,
    COMMANDS_QUEUE,
    DEAD_EXCHANGE,
    DEAD_QUEUE,
    DELIVERY_LIMIT,
    EVENTS_EXCHANGE,
)

SEAT_PRICE = 115  # Support Professional, USD monthly
RELAY_LOCK_KEY = 0x5E_B2E1

log = logging.getLogger("benchmarks.ceiling")

SCHEMA = """
CREATE TABLE bench_accounts (
    account_id TEXT PRIMARY KEY, name TEXT NOT NULL, owner_id TEXT NOT NULL,
    admin_id TEXT NOT NULL, seats INTEGER NOT NULL
);
CREATE TABLE bench_requests (
    request_id TEXT PRIMARY KEY, account_id TEXT NOT NULL REFERENCES bench_accounts,
    requester_id TEXT NOT NULL, state TEXT NOT NULL, changes TEXT NOT NULL,
    summary TEXT NOT NULL, created_at {ts} NOT NULL, decided_at {ts}, decided_by TEXT
);
CREATE INDEX bench_requests_account ON bench_requests (account_id, created_at);
CREATE UNIQUE INDEX bench_requests_one_pending ON bench_requests (account_id)
    WHERE state = 'pending';
CREATE TABLE bench_history (
    id {id} PRIMARY KEY, request_id TEXT NOT NULL REFERENCES bench_requests,
    from_state TEXT, to_state TEXT NOT NULL, trigger TEXT NOT NULL, actor_id TEXT,
    at {ts} NOT NULL
);
CREATE INDEX bench_history_request ON bench_history (request_id);
CREATE TABLE bench_outbox (
    id {id} PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
    account_id TEXT NOT NULL, request_id TEXT, payload TEXT NOT NULL,
    created_at {ts} NOT NULL, published_at {ts}
);
CREATE INDEX bench_outbox_unpublished ON bench_outbox (id) WHERE published_at IS NULL;
CREATE TABLE bench_replies (
    key TEXT PRIMARY KEY, command TEXT NOT NULL, reply TEXT NOT NULL,
    processed_at {ts} NOT NULL
);
"""


# --- storage ------------------------------------------------------------------------------


class Store:
    """The few things the ceiling needs from either database, ``%s`` placeholders."""

    is_postgres = False
    for_update = ""

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        raise NotImplementedError

    def many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``: the SQL fragment and its parameters."""
        raise NotImplementedError

    def ts(self, value: datetime) -> Any:
        return value

    def close(self) -> None:
        raise NotImplementedError


class PostgresStore(Store):
    is_postgres = True
    for_update = " FOR UPDATE"

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(libpq(url), autocommit=False)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.conn.rollback()
            raise
        self.conn.commit()

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(statement, params).fetchall()

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(statement, params)

    def many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(statement, rows)

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(%s)", [list(values)]

    def close(self) -> None:
        self.conn.close()


class SqliteStore(Store):
    """WAL, ``synchronous=NORMAL`` and ``BEGIN IMMEDIATE``: subreq's SQLite settings."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=30000",
        ):
            self.conn.execute(pragma)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(statement.replace("%s", "?"), params).fetchall()

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(statement.replace("%s", "?"), params)

    def many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(statement.replace("%s", "?"), rows)

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    def ts(self, value: datetime) -> Any:
        return value.isoformat()

    def close(self) -> None:
        self.conn.close()


def libpq(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def open_store(url: str) -> Store:
    """A store for a SQLAlchemy-style URL: ``postgresql+psycopg://...`` or ``sqlite:///...``."""
    if url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite:///") :])
    if url.startswith(("postgresql", "postgres")):
        return PostgresStore(url)
    raise ValueError(f"unsupported database URL {url!r}")


def create_schema(url: str, accounts: Sequence[tuple[str, str, str]]) -> None:
    """Tables and ``(account_id, owner_id, admin_id)`` accounts with 10 seats (untimed)."""
    store = open_store(url)
    try:
        kinds = {"id": "BIGSERIAL", "ts": "TIMESTAMPTZ"}
        if not store.is_postgres:
            kinds = {"id": "INTEGER", "ts": "TEXT"}
        with store.transaction():
            for statement in SCHEMA.format(**kinds).split(";"):
                if statement.strip():
                    store.execute(statement)
            store.many(
                "INSERT INTO bench_accounts (account_id, name, owner_id, admin_id, seats) "
                "VALUES (%s, %s, %s, %s, 10)",
                [(a, f"Account {a}", owner, admin) for a, owner, admin in accounts],
            )
    finally:
        store.close()


def unpublished(store: Store) -> int:
    rows = store.query("SELECT count(*) FROM bench_outbox WHERE published_at IS NULL")
    return int(rows[0][0])


# --- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    tag: int
    routing_key: str
    properties: BasicProperties
    body: bytes


@dataclass
class Writes:
    requests: list[tuple[Any, ...]] = field(default_factory=list)
    decided: list[tuple[Any, ...]] = field(default_factory=list)
    seats: list[tuple[Any, ...]] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    replies: list[tuple[Any, ...]] = field(default_factory=list)


def iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def refusal(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message, "details": []}}


class Processor:
    """One batch of deliveries -> one transaction -> one reply body per delivery."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def process(self, batch: Sequence[Delivery]) -> list[bytes]:
        store = self.store
        now = datetime.now(UTC)
        bodies: list[dict[str, Any] | None] = []
        for delivery in batch:
            try:
                body = orjson.loads(delivery.body)
            except orjson.JSONDecodeError:
                body = None
            bodies.append(body if isinstance(body, dict) else None)
        with store.transaction():
            keys = [d.properties.message_id for d in batch if d.properties.message_id]
            stored: dict[str, str] = {}
            if keys:
                where, params = store.among("key", keys)
                rows = store.query(f"SELECT key, reply FROM bench_replies WHERE {where}", params)
                stored = {str(k): str(r) for k, r in rows}
            decide_ids = [
                str(b.get("request_id"))
                for d, b in zip(batch, bodies, strict=True)
                if b is not None and d.routing_key == "request.decide"
            ]
            requests: dict[str, tuple[Any, ...]] = {}
            if decide_ids:
                where, params = store.among("request_id", decide_ids)
                for row in store.query(
                    "SELECT request_id, account_id, requester_id, state, changes, summary, "
                    f"created_at FROM bench_requests WHERE {where}",
                    params,
                ):
                    requests[row[0]] = row
            account_ids = {
                str(b.get("account_id"))
                for d, b in zip(batch, bodies, strict=True)
                if b is not None and d.routing_key == "request.submit"
            } | {row[1] for row in requests.values()}
            accounts: dict[str, list[Any]] = {}
            pending: set[str] = set()
            if account_ids:
                where, params = store.among("account_id", sorted(account_ids))
                for row in store.query(
                    "SELECT account_id, name, owner_id, admin_id, seats FROM bench_accounts "
                    f"WHERE {where} ORDER BY account_id{store.for_update}",
                    params,
                ):
                    accounts[row[0]] = list(row)
                pending = {
                    row[0]
                    for row in store.query(
                        "SELECT account_id FROM bench_requests "
                        f"WHERE state = 'pending' AND {where}",
                        params,
                    )
                }
            writes = Writes()
            replies: list[bytes] = []
            for delivery, body in zip(batch, bodies, strict=True):
                key = delivery.properties.message_id
                if key and key in stored:
                    replies.append(stored[key].encode())
                    continue
                if body is None:
                    reply = refusal("invalid_message", "body is not a JSON object")
                elif delivery.routing_key == "request.submit":
                    reply = self.submit(body, now, accounts, pending, writes)
                elif delivery.routing_key == "request.decide":
                    reply = self.decide(body, now, accounts, requests, writes)
                else:
                    reply = refusal(
                        "invalid_message", f"unknown routing key {delivery.routing_key}"
                    )
                encoded = orjson.dumps(reply)
                if key:
                    stored[key] = encoded.decode()
                    writes.replies.append((key, delivery.routing_key, stored[key], store.ts(now)))
                replies.append(encoded)
            self.write(writes)
        return replies

    def write(self, w: Writes) -> None:
        store = self.store
        if w.requests:
            store.many(
                "INSERT INTO bench_requests (request_id, account_id, requester_id, state, "
                "changes, summary, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                w.requests,
            )
        if w.decided:
            store.many(
                "UPDATE bench_requests SET state = %s, decided_at = %s, decided_by = %s "
                "WHERE request_id = %s",
                w.decided,
            )
        if w.seats:
            store.many("UPDATE bench_accounts SET seats = %s WHERE account_id = %s", w.seats)
        if w.history:
            store.many(
                "INSERT INTO bench_history (request_id, from_state, to_state, trigger, "
                "actor_id, at) VALUES (%s, %s, %s, %s, %s, %s)",
                w.history,
            )
        if w.events:
            store.many(
                "INSERT INTO bench_outbox (event_id, type, account_id, request_id, payload, "
                "created_at) VALUES (%s, %s, %s, %s, %s, %s)",
                w.events,
            )
        if w.replies:
            store.many(
                "INSERT INTO bench_replies (key, command, reply, processed_at) "
                "VALUES (%s, %s, %s, %s)",
                w.replies,
            )

    def submit(
        self,
        body: dict[str, Any],
        now: datetime,
        accounts: dict[str, list[Any]],
        pending: set[str],
        w: Writes,
    ) -> dict[str, Any]:
        account_id, actor = str(body.get("account_id")), body.get("actor_id")
        account = accounts.get(account_id)
        if account is None:
            return refusal("unknown_account", f"no account {account_id}")
        if actor != account[3]:
            return refusal("forbidden", "only an admin without billing permission may submit")
        if account_id in pending:
            return refusal("request_pending", "the account has a pending request")
        changes = body.get("changes") or []
        quantity = sum(int(c.get("quantity", 0)) for c in changes if isinstance(c, dict))
        seats = account[4]
        summary = summarize(changes, seats, seats + quantity)
        request_id = str(uuid.uuid4())
        at = iso(now)
        view = request_view(request_id, account_id, actor, "pending", changes, summary, at)
        view["history"] = [history_step(None, "pending", "submit", actor, at)]
        pending.add(account_id)
        w.requests.append(
            (
                request_id,
                account_id,
                actor,
                "pending",
                orjson.dumps(changes).decode(),
                orjson.dumps(summary).decode(),
                self.store.ts(now),
            )
        )
        w.history.append((request_id, None, "pending", "submit", actor, self.store.ts(now)))
        self.event(w, "request.submitted", account_id, request_id, now, {"request": view})
        self.notify(w, account_id, request_id, now, account[2], "request_submitted", view)
        return {"ok": True, "result": {"request": view}}

    def decide(
        self,
        body: dict[str, Any],
        now: datetime,
        accounts: dict[str, list[Any]],
        requests: dict[str, tuple[Any, ...]],
        w: Writes,
    ) -> dict[str, Any]:
        request_id, actor = str(body.get("request_id")), body.get("actor_id")
        row = requests.get(request_id)
        if row is None:
            return refusal("not_found", f"no request {request_id}")
        _, account_id, requester, state, changes_json, summary_json, created = row
        account = accounts[account_id]
        if actor != account[2]:
            return refusal("forbidden", "only the owner or a billing admin may decide")
        if state != "pending":
            return refusal("invalid_state", f"the request is {state}")
        changes, summary = orjson.loads(changes_json), orjson.loads(summary_json)
        quantity = sum(int(c.get("quantity", 0)) for c in changes if isinstance(c, dict))
        old_seats = account[4]
        account[4] = old_seats + quantity
        at = iso(now)
        view = request_view(
            request_id, account_id, requester, "approved", changes, summary, iso(created)
        )
        view.update(decided_at=at, decided_by=actor)
        view["history"] = [
            history_step(None, "pending", "submit", requester, iso(created)),
            history_step("pending", "approved", "approve", actor, at),
        ]
        view["approvals"] = [{"actor_id": actor, "at": at, "comment": None}]
        requests[request_id] = (*row[:3], "approved", *row[4:])
        w.decided.append(("approved", self.store.ts(now), actor, request_id))
        w.seats.append((account[4], account_id))
        w.history.append((request_id, "pending", "approved", "approve", actor, self.store.ts(now)))
        self.event(w, "request.approved", account_id, request_id, now, {"request": view})
        self.event(
            w,
            "subscription.changed",
            account_id,
            request_id,
            now,
            {
                "old": subscription(old_seats),
                "new": subscription(account[4]),
                "request_id": request_id,
            },
        )
        self.notify(w, account_id, request_id, now, requester, "request_approved", view)
        return {"ok": True, "result": {"request": view}}

    def event(
        self,
        w: Writes,
        type_: str,
        account_id: str,
        request_id: str,
        now: datetime,
        data: dict[str, Any],
    ) -> None:
        event_id = str(uuid.uuid4())
        payload = {
            "event_id": event_id,
            "type": type_,
            "occurred_at": iso(now),
            "account_id": account_id,
            "request_id": request_id,
            "data": data,
        }
        w.events.append(
            (
                event_id,
                type_,
                account_id,
                request_id,
                orjson.dumps(payload).decode(),
                self.store.ts(now),
            )
        )

    def notify(
        self,
        w: Writes,
        account_id: str,
        request_id: str,
        now: datetime,
        user_id: str,
        template: str,
        view: dict[str, Any],
    ) -> None:
        lines = "\n".join(line["description"] for line in view["summary"]["lines"])
        self.event(
            w,
            "notification.requested",
            account_id,
            request_id,
            now,
            {
                "notification_id": str(uuid.uuid4()),
                "template": template,
                "locale": "en",
                "recipient": {
                    "user_id": user_id,
                    "email": f"{user_id}@{account_id}.example",
                    "name": user_id.replace("-", " ").title(),
                },
                "subject": f"Subscription change request {request_id[:8]}: {template}",
                "text": f"Request {request_id} for account {account_id}:\n{lines}\n"
                f"Total per month: {view['summary']['total']} USD",
            },
        )


def subscription(seats: int) -> dict[str, Any]:
    return {
        "currency": "USD",
        "billing_cycle": "monthly",
        "products": [{"product": "support", "plan": "professional", "seats": seats}],
    }


def summarize(changes: list[Any], seats: int, proposed: int) -> dict[str, Any]:
    cost = f"{(proposed - seats) * SEAT_PRICE:.2f}"
    return {
        "currency": "USD",
        "billing_cycle": "monthly",
        "period": "month",
        "lines": [
            {
                "item": change,
                "description": f"Add {change.get('quantity')} seat to Support (Professional)",
                "current": {"product": "support", "plan": "professional", "seats": seats},
                "proposed": {"product": "support", "plan": "professional", "seats": proposed},
                "cost": cost,
            }
            for change in changes
            if isinstance(change, dict)
        ],
        "total": cost,
    }


def request_view(
    request_id: str,
    account_id: str,
    requester: Any,
    state: str,
    changes: Any,
    summary: dict[str, Any],
    created_at: str,
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "account_id": account_id,
        "requester_id": requester,
        "requester_name": str(requester).replace("-", " ").title(),
        "state": state,
        "changes": changes,
        "note": None,
        "summary": summary,
        "created_at": created_at,
        "decided_at": None,
        "decided_by": None,
        "comment": None,
        "history": [],
        "approvals": [],
    }


def history_step(from_: str | None, to: str, trigger: str, actor: Any, at: str) -> dict[str, Any]:
    return {
        "from": from_,
        "to": to,
        "trigger": trigger,
        "actor_id": actor,
        "at": at,
        "reason": None,
    }


# --- broker -------------------------------------------------------------------------------


def connect(url: str, name: str) -> BlockingConnection:
    params = pika.URLParameters(url)
    params.heartbeat = 30
    params.client_properties = {"connection_name": name}
    return BlockingConnection(params)


def declare_topology(channel: BlockingChannel) -> None:
    """subreq's topology, same names and arguments (a quorum command queue)."""
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


class Confirms:
    """Publisher confirms, pipelined: publish a whole batch, then wait once for all of its
    confirms (BlockingChannel.confirm_delivery would wait for each in turn). Uses pika's
    underlying channel, which BlockingChannel does not expose for this."""

    def __init__(self, connection: BlockingConnection, channel: BlockingChannel) -> None:
        self.connection = connection
        self.impl = channel._impl
        self.tag = 0
        self.unconfirmed: set[int] = set()
        self.nacked = 0
        selected: list[bool] = []
        self.impl.confirm_delivery(self._on_confirm, callback=lambda _frame: selected.append(True))
        self._wait(lambda: bool(selected), 10.0)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if method.multiple:
            done = {t for t in self.unconfirmed if t <= method.delivery_tag}
        else:
            done = {method.delivery_tag}
        self.unconfirmed -= done
        if isinstance(method, Basic.Nack):
            self.nacked += len(done)

    def publish(self, exchange: str, routing_key: str, body: bytes, props: BasicProperties) -> None:
        self.impl.basic_publish(exchange, routing_key, body, props)
        self.tag += 1
        self.unconfirmed.add(self.tag)

    def wait_all(self, timeout: float = 30.0) -> None:
        """Every publish confirmed (acked), or an exception: the caller rolls back."""
        self._wait(lambda: not self.unconfirmed, timeout)
        if self.nacked:
            self.nacked = 0
            raise RuntimeError("the broker refused (nacked) events")

    def _wait(self, ready: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        self.connection.call_later(timeout, lambda: None)  # wakes the poll at the deadline
        self.connection._flush_output(ready, lambda: time.monotonic() > deadline)
        if not ready():
            raise TimeoutError(f"no publisher confirm within {timeout:.0f}s")


class Relay(threading.Thread):
    """Publishes committed outbox rows with confirms; marks them in the claiming
    transaction. Drains what is committed before it stops."""

    def __init__(
        self,
        amqp_url: str,
        database_url: str,
        batch_size: int = 500,
    ) -> None:
        super().__init__(name="ceiling-relay", daemon=True)
        self.amqp_url = amqp_url
        self.database_url = database_url
        self.batch_size = batch_size
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc
            log.exception("relay failed")

    def _run(self) -> None:
        store = open_store(self.database_url)
        connection = connect(self.amqp_url, "bench-ceiling-relay")
        try:
            channel = connection.channel()
            declare_topology(channel)
            confirms = Confirms(connection, channel)
            while True:
                sent = self._once(store, confirms)
                if sent < self.batch_size:
                    if self.stopping.is_set() and sent == 0:
                        return
                    self._idle(connection)
        finally:
            store.close()
            if connection.is_open:
                connection.close()

    def _idle(self, connection: BlockingConnection) -> None:
        for _ in range(50):  # at most 0.5 s; a commit wakes it within 10 ms
            if self.wake.wait(0.01) or self.stopping.is_set():
                break
            connection.process_data_events(time_limit=0)
        self.wake.clear()

    def _once(self, store: Store, confirms: Confirms) -> int:
        with store.transaction():
            if (
                store.is_postgres
                and not store.query("SELECT pg_try_advisory_xact_lock(%s)", [RELAY_LOCK_KEY])[0][0]
            ):
                return 0
            skip = " FOR UPDATE SKIP LOCKED" if store.is_postgres else ""
            rows = store.query(
                "SELECT id, event_id, type, payload FROM bench_outbox "
                f"WHERE published_at IS NULL ORDER BY id LIMIT %s{skip}",
                [self.batch_size],
            )
            for _, event_id, type_, payload in rows:
                confirms.publish(
                    EVENTS_EXCHANGE,
                    type_,
                    payload.encode(),
                    BasicProperties(
                        content_type="application/json",
                        delivery_mode=pika.DeliveryMode.Persistent,
                        message_id=event_id,
                        type=type_,
                    ),
                )
            if rows:
                confirms.wait_all()
                where, params = store.among("id", [r[0] for r in rows])
                store.execute(
                    f"UPDATE bench_outbox SET published_at = %s WHERE {where}",
                    [store.ts(datetime.now(UTC)), *params],
                )
            return len(rows)


def serve(amqp_url: str, database_url: str, batch: int, prefetch: int) -> int:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    store = open_store(database_url)
    processor = Processor(store)
    relay = Relay(amqp_url, database_url)
    connection = connect(amqp_url, "bench-ceiling")
    buffer: list[Delivery] = []

    def on_message(
        _ch: BlockingChannel, method: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        buffer.append(Delivery(method.delivery_tag, method.routing_key, props, body))

    try:
        channel = connection.channel()
        declare_topology(channel)
        channel.basic_qos(prefetch_count=max(prefetch, batch))
        tag = channel.basic_consume(COMMANDS_QUEUE, on_message)
        relay.start()
        while not stop.is_set() or buffer:
            if relay.error is not None:
                raise RuntimeError("the relay thread failed") from relay.error
            connection.process_data_events(time_limit=0 if buffer else 0.1)
            if stop.is_set() and tag:
                channel.basic_cancel(tag)  # unhandled deliveries go back to the queue
                tag = ""
            if not buffer:
                continue
            work, buffer[:] = buffer[:batch], buffer[batch:]
            replies = processor.process(work)
            relay.wake.set()
            for delivery, reply in zip(work, replies, strict=True):
                props = delivery.properties
                if props.reply_to:  # written with the ack below, not one send() each
                    channel._impl.basic_publish(
                        "",
                        props.reply_to,
                        reply,
                        BasicProperties(
                            content_type="application/json",
                            correlation_id=props.correlation_id or props.message_id,
                        ),
                    )
            channel.basic_ack(work[-1].tag, multiple=True)
    finally:
        relay.stopping.set()
        relay.wake.set()
        relay.join(30)
        store.close()
        if connection.is_open:
            connection.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__)
    parser.add_argument(
        "--amqp-url", default=os.environ.get("SUBREQ_AMQP_URL"), help="default: $SUBREQ_AMQP_URL"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SUBREQ_DATABASE_URL"),
        help="default: $SUBREQ_DATABASE_URL",
    )
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--prefetch", type=int, default=500)
    args = parser.parse_args(argv)
    if not args.amqp_url or not args.database_url:
        parser.error("--amqp-url and --database-url (or their environment variables) are needed")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    patches.apply()  # pika's socket writes coalesced, as in subreq's worker
    log.info("consuming %s (prefetch %d, batch %d)", COMMANDS_QUEUE, args.prefetch, args.batch)
    return serve(args.amqp_url, args.database_url, args.batch, args.prefetch)


if __name__ == "__main__":
    sys.exit(main())
