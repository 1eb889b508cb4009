"""The closed-loop load generator: request.submit / request.decide pairs over many accounts.

One pika connection publishes to ``subreq.commands`` and reads replies through direct
reply-to. Each account alternates ``request.submit`` (its admin adds one Support seat) and
``request.decide`` (its owner approves the request the submit's reply named), so the mix
is 50/50 and every command is one the service accepts. An account has at most one command
in flight; idle accounts queue up in a ring, so all accounts take turns. A phase keeps
``in_flight`` commands outstanding until it has sent ``commands``, then waits for every
reply; :meth:`LoadGenerator.drain` then waits for the outbox to be empty.

Latency is publish -> reply, per command, measured here with ``perf_counter``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import sqlite3
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import orjson
import pika
import psycopg
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import ChannelClosedByBroker
from pika.spec import Basic, BasicProperties

from benchmarks.seed import admin_of, owner_of
from benchmarks.services import libpq_url
from consumers.amqp import patches
from workflow.contract.names import COMMANDS_EXCHANGE, COMMANDS_QUEUE, EVENTS_EXCHANGE, REPLY_TO

EVENTS_QUEUE = "bench.events"
CHECK_EVERY = 0.25  # seconds between liveness / timeout checks
MAX_ERROR_SAMPLES = 5


def submit_body(account: str) -> bytes:
    """The account admin's request for one more Support seat."""
    return orjson.dumps(
        {
            "account_id": account,
            "actor_id": admin_of(account),
            "changes": [{"type": "add_seats", "product": "support", "quantity": 1}],
        }
    )


def approve_body(account: str, request_id: str) -> bytes:
    """The account owner's approval of ``request_id``."""
    return orjson.dumps(
        {"request_id": request_id, "actor_id": owner_of(account), "decision": "approve"}
    )


class BenchError(RuntimeError):
    """The benchmark cannot give a meaningful figure (no reply, backlog stuck, ...)."""


@dataclass
class Phase:
    """What one phase of load measured."""

    name: str
    commands: int
    in_flight: int
    replies: int = 0
    errors: int = 0
    duplicates: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds, in reply order
    started: float = 0.0
    replied: float = 0.0  # the last reply
    drained: float = 0.0  # the outbox backlog reached 0
    loadgen_cpu: float = 0.0  # CPU seconds of this process while it sent and waited

    @property
    def seconds(self) -> float:
        """From the first publish until the outbox is empty (or the last reply)."""
        return (self.drained or self.replied) - self.started

    @property
    def relay_lag(self) -> float:
        return max(0.0, self.drained - self.replied) if self.drained else 0.0

    def percentile(self, q: float) -> float:
        """Nearest-rank percentile in milliseconds."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
        return ordered[rank - 1] * 1000


class Backlog:
    """Counts unpublished outbox rows on a plain read connection.

    The SQLAlchemy engine of subreq opens every SQLite transaction with BEGIN IMMEDIATE,
    so polling through it would take the write lock away from the worker; this reads
    without locking. ``unpublished``: the predicate of ``workflow.app.outbox.backlog`` for
    subreq's outbox (``marks``: the relay's marks), ``published_at IS NULL`` for the ceiling's.
    """

    def __init__(self, database_url: str, table: str, marks: str | None = None) -> None:
        self.table = table
        unpublished = (
            "published_at IS NULL"
            if marks is None
            else f"id > (SELECT coalesce(max(upto_id), 0) FROM {marks})"
        )
        self.query = f"SELECT count(*) FROM {table} WHERE {unpublished}"
        self.total_query = f"SELECT count(*) FROM {table}"
        self._pg: psycopg.Connection[Any] | None = None
        self._sqlite: sqlite3.Connection | None = None
        if database_url.startswith("sqlite:///"):
            path = database_url[len("sqlite:///") :]
            self._sqlite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        else:
            self._pg = psycopg.connect(libpq_url(database_url), autocommit=True)

    def _scalar(self, query: str) -> int:
        if self._pg is not None:
            row = self._pg.execute(query).fetchone()
        elif self._sqlite is not None:
            row = self._sqlite.execute(query).fetchone()
        else:
            raise RuntimeError("closed")
        return int(row[0]) if row else 0

    def unpublished(self) -> int:
        return self._scalar(self.query)

    def total(self) -> int:
        """Every outbox row, published or not."""
        return self._scalar(self.total_query)

    def count_type(self, type_: str) -> int:
        """Events of one type (a constant of the contract, never input)."""
        return self._scalar(f"SELECT count(*) FROM {self.table} WHERE type = '{type_}'")

    def count(self, table: str) -> int:
        return self._scalar(f"SELECT count(*) FROM {table}")

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._sqlite is not None:
            self._sqlite.close()
        self._pg = self._sqlite = None

    def __enter__(self) -> Backlog:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class LoadGenerator:
    """Not thread-safe; one per run. ``check`` raises when the process under test died."""

    def __init__(
        self,
        amqp_url: str,
        accounts: Sequence[str],
        *,
        check: Callable[[], None],
        reply_timeout: float = 60.0,
    ) -> None:
        if not accounts:
            raise ValueError("at least one account is needed")
        logging.getLogger("pika").setLevel(logging.CRITICAL)
        patches.apply()  # pika's socket writes coalesced, as in subreq's worker
        params = pika.URLParameters(amqp_url)
        params.heartbeat = 60
        params.client_properties = {"connection_name": "subreq-bench-load"}
        self.connection = pika.BlockingConnection(params)
        self.channel: BlockingChannel = self.connection.channel()
        self.channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)
        self.accounts = list(accounts)
        self.check = check
        self.reply_timeout = reply_timeout
        self.idle: collections.deque[str] = collections.deque(self.accounts)
        self.pending: dict[str, str] = {}  # account -> request id its owner is to approve
        self.outstanding: dict[str, tuple[float, str, str]] = {}  # corr id -> (t0, account, rk)
        self.inbox: list[tuple[str | None, bytes, float]] = []
        self.sent = 0  # every command published, all phases
        self._submits = {a: submit_body(a) for a in self.accounts}

    # --- set-up ---------------------------------------------------------------------------

    def wait_consuming(self, timeout: float, consumers: int = 1) -> None:
        """Until the command queue exists and has ``consumers`` consumers (the workers are
        ready)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            channel = self.connection.channel()
            try:
                declared = channel.queue_declare(COMMANDS_QUEUE, passive=True)
                if declared.method.consumer_count >= consumers:
                    return
            except ChannelClosedByBroker:  # 404: not declared yet
                pass
            finally:
                if channel.is_open:
                    channel.close()
            if time.monotonic() > deadline:
                raise BenchError(f"no consumer on {COMMANDS_QUEUE} after {timeout:.0f}s")
            self.connection.sleep(0.1)

    def bind_events(self) -> None:
        """A durable queue bound to every event, as a real consumer would have."""
        self.channel.queue_declare(EVENTS_QUEUE, durable=True)
        self.channel.queue_bind(EVENTS_QUEUE, EVENTS_EXCHANGE, routing_key="#")

    def queued_events(self) -> int:
        declared = self.channel.queue_declare(EVENTS_QUEUE, durable=True, passive=True)
        return int(declared.method.message_count)

    # --- load -----------------------------------------------------------------------------

    def _on_reply(
        self, _ch: BlockingChannel, _m: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        self.inbox.append((props.correlation_id, body, time.perf_counter()))

    def _publish(self, account: str) -> None:
        request_id = self.pending.get(account)
        if request_id is None:
            routing_key, body = "request.submit", self._submits[account]
        else:
            routing_key = "request.decide"
            body = approve_body(account, request_id)
        message_id = str(uuid.uuid4())
        properties = BasicProperties(
            content_type="application/json",
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id,
            correlation_id=message_id,
            reply_to=REPLY_TO,
        )
        self.outstanding[message_id] = (time.perf_counter(), account, routing_key)
        # Queued on the channel: process_data_events writes the whole burst at once.
        self.channel._impl.basic_publish(COMMANDS_EXCHANGE, routing_key, body, properties)
        self.sent += 1

    def _handle_replies(self, phase: Phase) -> None:
        inbox, self.inbox = self.inbox, []
        for correlation_id, body, at in inbox:
            entry = self.outstanding.pop(correlation_id or "", None)
            if entry is None:  # a redelivered command answered twice: allowed, not counted
                phase.duplicates += 1
                continue
            started, account, routing_key = entry
            phase.latencies.append(at - started)
            phase.replies += 1
            self.idle.append(account)
            problem = self._apply(account, routing_key, body)
            if problem is not None:
                phase.errors += 1
                if len(phase.error_samples) < MAX_ERROR_SAMPLES:
                    phase.error_samples.append(f"{routing_key} for {account}: {problem}")

    def _apply(self, account: str, routing_key: str, body: bytes) -> str | None:
        """Advance the account's cycle; a description of anything unexpected."""
        try:
            reply = orjson.loads(body)
        except orjson.JSONDecodeError:
            return f"reply is not JSON: {body[:200]!r}"
        if not reply.get("ok"):
            return str(reply.get("error"))[:300]
        request = reply.get("result", {}).get("request", {})
        expected = "pending" if routing_key == "request.submit" else "approved"
        if request.get("state") != expected:
            return f"request state {request.get('state')!r}, expected {expected!r}"
        if routing_key == "request.submit":
            self.pending[account] = request["request_id"]
        else:
            self.pending.pop(account, None)
        return None

    def run(
        self,
        name: str,
        commands: int,
        in_flight: int,
        *,
        on_reply: Callable[[int], None] | None = None,
    ) -> Phase:
        """Send ``commands`` with ``in_flight`` outstanding; return once all are answered."""
        in_flight = max(1, min(in_flight, len(self.accounts)))
        phase = Phase(name, commands, in_flight)
        published = 0
        cpu_before = time.process_time()
        phase.started = time.perf_counter()
        next_check = phase.started + CHECK_EVERY
        while phase.replies < commands:
            while published < commands and len(self.outstanding) < in_flight and self.idle:
                self._publish(self.idle.popleft())
                published += 1
            self.connection.process_data_events(time_limit=0.05)
            if self.inbox:
                self._handle_replies(phase)
                if on_reply is not None:
                    on_reply(phase.replies)
            now = time.perf_counter()
            if now >= next_check:
                next_check = now + CHECK_EVERY
                self.check()
                self._check_timeout(now)
        phase.replied = time.perf_counter()
        phase.loadgen_cpu = time.process_time() - cpu_before
        return phase

    def _check_timeout(self, now: float) -> None:
        if not self.outstanding:
            return
        started, account, routing_key = next(iter(self.outstanding.values()))
        if now - started > self.reply_timeout:
            raise BenchError(
                f"no reply to {routing_key} for {account} after {self.reply_timeout:.0f}s "
                f"({len(self.outstanding)} commands outstanding)"
            )

    def drain(
        self,
        backlog: Backlog,
        phase: Phase | None,
        timeout: float,
        *,
        settled: Callable[[], bool] | None = None,
    ) -> None:
        """Wait until every committed event is published (and confirmed), and ``settled()``
        if given; stamps ``phase.drained``. Late duplicate replies are still read meanwhile."""
        deadline = time.monotonic() + timeout
        next_check = 0.0
        while not ((settled is None or settled()) and backlog.unpublished() == 0):
            now = time.monotonic()
            if now > deadline:
                waiting = f"{backlog.unpublished()} unpublished events"
                if settled is not None and not settled():
                    waiting += " and notifications not delivered yet"
                raise BenchError(f"after {timeout:.0f}s the outbox still holds {waiting}")
            if now >= next_check:
                next_check = now + CHECK_EVERY
                self.check()
            self.connection.process_data_events(time_limit=0.002)
        if phase is not None:
            phase.drained = time.perf_counter()
        if self.inbox:  # duplicates only: every command of the phase was answered
            self._handle_replies(phase or Phase("drain", 0, 0))

    def close(self) -> None:
        if self.connection.is_open:
            with contextlib.suppress(Exception):
                self.connection.close()

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
