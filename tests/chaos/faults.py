"""The faults the scenarios inject, and the watcher that samples R11 while they happen.

A fault is ticked by the load loop with the seconds since the load started; slow
actions (``rabbitmqctl``, database statements, an SMTP outage) run on a thread of their
own so the load keeps flowing meanwhile. Only this scenario's things are touched: its
own worker processes, the connections of its own vhost, the backends of its own
database. The full PostgreSQL restart is the one exception, and is opt-in.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import psycopg
from psycopg import sql

from tests.chaos.cluster import Cluster, Node
from tests.chaos.private_postgres import PrivatePostgres
from tests.chaos.smtp import MailSink
from tests.chaos.stack import Stack, libpq, rabbitmqctl
from workflow.persistence.locks import account_lock_keys


class Fault(Protocol):
    name: str
    count: int

    def tick(self, elapsed: float) -> None: ...

    def finish(self) -> None: ...


class Background:
    """At most one slow action at a time on its own thread; errors kept for the report."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self, action: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                action()
            except Exception as exc:
                self.errors.append(repr(exc))

        self._thread = threading.Thread(target=guarded, name="chaos-fault", daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(120)


class OnceInBackground:
    """A fault acted once, from ``at`` seconds into the load on, on a thread of its own
    (the load goes on meanwhile); its errors fail the scenario at ``finish``."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.started = False
        self.background = Background()

    def act(self) -> None:
        raise NotImplementedError

    def tick(self, elapsed: float) -> None:
        if not self.started and elapsed >= self.at:
            self.started = True
            self.background.run(self.act)

    def finish(self) -> None:
        self.background.join()
        assert not self.background.errors, self.background.errors


@dataclass
class Every:
    """Due every ``period`` seconds (jittered by a quarter), from ``period`` on."""

    period: float
    rng: random.Random
    until: float = float("inf")
    next_at: float = -1.0

    def due(self, elapsed: float) -> bool:
        if self.next_at < 0:
            self.next_at = self.period
        if elapsed < self.next_at or elapsed > self.until:
            return False
        self.next_at = elapsed + self.period * self.rng.uniform(0.75, 1.25)
        return True


class WorkerKiller:
    """kill -9 of a random worker every couple of seconds; it is restarted at once."""

    name = "kills"

    def __init__(self, stack: Stack, every: float, rng: random.Random) -> None:
        self.stack = stack
        self.rng = rng
        self.schedule = Every(every, rng)
        self.count = 0
        self.times: list[float] = []  # wall clock of each kill

    def tick(self, elapsed: float) -> None:
        if not self.schedule.due(elapsed):
            return
        at = time.time()  # the signal follows at once; the restart takes a while after it
        if self.stack.kill_one(self.rng) is not None:
            self.count += 1
            self.times.append(at)

    def finish(self) -> None:
        pass


class SlowTransactions:
    """Every ``every`` seconds, a fifth of the accounts' rows locked for ``hold`` seconds
    by the harness: the workers' batches touching them wait mid-transaction, with their
    deliveries in hand, so the kills land on transactions in flight and not only on
    idle workers. (Rows are locked in account order, as the workers lock them: no
    deadlock.)"""

    name = "lock_holds"

    def __init__(
        self, stack: Stack, accounts: list[str], every: float, hold: float, rng: random.Random
    ) -> None:
        self.stack = stack
        self.accounts = accounts
        self.hold = hold
        self.rng = rng
        self.schedule = Every(every, rng)
        self.count = 0
        self.background = Background()

    def _hold(self) -> None:
        chosen = sorted(self.rng.sample(self.accounts, max(1, len(self.accounts) // 5)))
        with psycopg.connect(libpq(self.stack.database_url), connect_timeout=5) as conn:
            keys = account_lock_keys(chosen)  # as a command takes them
            conn.execute(
                "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) k", (keys,)
            )
            time.sleep(self.hold)
            conn.rollback()

    def tick(self, elapsed: float) -> None:
        if not self.background.busy() and self.schedule.due(elapsed):
            self.count += 1
            self.background.run(self._hold)

    def finish(self) -> None:
        self.background.join()
        assert not self.background.errors, self.background.errors


class BrokerDrops:
    """The broker closes every connection of the scenario's vhost (other vhosts on the
    node are left alone), several times during the load."""

    name = "drops"

    def __init__(self, vhost: str, every: float, rng: random.Random) -> None:
        self.vhost = vhost
        self.schedule = Every(every, rng)
        self.count = 0
        self.background = Background()

    def _drop(self) -> None:
        rabbitmqctl("close_all_connections", "--vhost", self.vhost, "chaos: connection drop")

    def tick(self, elapsed: float) -> None:
        if not self.background.busy() and self.schedule.due(elapsed):
            self.count += 1
            self.background.run(self._drop)

    def finish(self) -> None:
        self.background.join()
        assert not self.background.errors, self.background.errors


class DatabaseFaults:
    """Every backend of the scenario's database terminated every few seconds, and once,
    mid-load, the database refusing every connection for ``outage`` seconds."""

    name = "db_faults"

    def __init__(
        self,
        stack: Stack,
        every: float,
        rng: random.Random,
        *,
        outage: float,
        outage_at: float,
    ) -> None:
        self.stack = stack
        self.schedule = Every(every, rng)
        self.outage = outage
        self.outage_at = outage_at
        self.outages = 0
        self.count = 0
        self.terminated = 0
        self.background = Background()
        self._identifier = sql.Identifier(stack.database)

    def _terminate(self, conn: psycopg.Connection[Any]) -> None:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.stack.database,),
        ).fetchall()
        self.terminated += sum(1 for (done,) in rows if done)

    def _kill_backends(self) -> None:
        with self.stack.maintenance() as conn:
            self._terminate(conn)

    def _outage(self) -> None:
        with self.stack.maintenance() as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(self._identifier)
            )
            try:
                self._terminate(conn)
                time.sleep(self.outage)
            finally:
                conn.execute(
                    sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                        self._identifier
                    )
                )

    def tick(self, elapsed: float) -> None:
        if self.background.busy():
            return
        if self.outage > 0 and not self.outages and elapsed >= self.outage_at:
            self.outages += 1
            self.count += 1
            self.background.run(self._outage)
        elif self.schedule.due(elapsed):
            self.count += 1
            self.background.run(self._kill_backends)

    def finish(self) -> None:
        self.background.join()
        assert not self.background.errors, self.background.errors


class PostgresRestart(OnceInBackground):
    """The scenario's private PostgreSQL server crashed (immediate stop) and started again,
    once, mid-load: every connection of every worker breaks at once, and transactions in
    flight are lost unless committed."""

    name = "pg_restarts"

    def __init__(self, server: PrivatePostgres, at: float) -> None:
        super().__init__(at)
        self.server = server
        self.count = 0

    def act(self) -> None:
        self.count += 1
        self.server.restart()


class SmtpOutage(OnceInBackground):
    """The SMTP server away for ``duration`` seconds from ``at`` on, then back."""

    name = "smtp_outages"

    def __init__(self, sink: MailSink, at: float, duration: float) -> None:
        super().__init__(at)
        self.sink = sink
        self.duration = duration
        self.count = 0

    def act(self) -> None:
        self.count += 1
        self.sink.go_down()
        try:
            time.sleep(self.duration)
        finally:
            self.sink.come_back()


@dataclass
class PendingWatch:
    """R11 sampled while the faults happen: the most pending requests any account had,
    read every ``interval`` seconds on a connection of its own (reconnecting through
    terminations and outages)."""

    database_url: str
    interval: float = 0.2
    samples: int = 0
    failed_samples: int = 0
    max_pending: int = 0
    worst: list[tuple[str, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    QUERY = (
        "SELECT account_id, count(*) FROM requests WHERE state = 'pending' "
        "GROUP BY account_id ORDER BY count(*) DESC LIMIT 3"
    )

    def start(self) -> PendingWatch:
        self._thread = threading.Thread(target=self._run, name="chaos-r11-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(
                        libpq(self.database_url), autocommit=True, connect_timeout=2
                    )
                rows = conn.execute(self.QUERY).fetchall()
            except psycopg.Error:
                self.failed_samples += 1
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            else:
                self.samples += 1
                top = int(rows[0][1]) if rows else 0
                if top > self.max_pending:
                    self.max_pending = top
                    self.worst = [(str(a), int(n)) for a, n in rows]
            self._stop.wait(self.interval)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


class NodeFailures(OnceInBackground):
    """On a private cluster, one after the other from ``at`` on: kill -9 of the node that
    leads the command queue, ``down`` seconds later that node started again, and once
    the cluster is whole, one node (the new leader) cut off from the others for
    ``partition`` seconds, then joined again. What happened, and how long each step
    took, is kept for the figures."""

    name = "node_faults"

    def __init__(
        self, cluster: Cluster, vhost: str, queue: str, *, at: float, down: float, partition: float
    ) -> None:
        super().__init__(at)
        self.cluster = cluster
        self.vhost = vhost
        self.queue = queue
        self.down = down
        self.partition = partition
        self.count = 0
        self.figures: dict[str, Any] = {}

    def _new_leader(self, gone: Node, timeout: float = 30.0) -> Node:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(Exception):
                leader = self.cluster.leader(self.vhost, self.queue, but=gone)
                if leader is not gone:
                    return leader
            if time.monotonic() > deadline:
                raise AssertionError(f"no new leader of {self.queue} within {timeout} s")
            time.sleep(0.2)

    def act(self) -> None:
        cluster, figures = self.cluster, self.figures
        victim = cluster.leader(self.vhost, self.queue)
        figures["killed"] = victim.name.split("@")[0]
        started = time.monotonic()
        victim.kill()
        self.count += 1
        leader = self._new_leader(victim)
        figures["leader_after_kill"] = leader.name.split("@")[0]
        figures["new_leader_s"] = round(time.monotonic() - started, 1)
        time.sleep(max(0.0, self.down - (time.monotonic() - started)))
        restarted = time.monotonic()
        victim.start()
        cluster.wait_whole()
        self.count += 1
        figures["restart_s"] = round(time.monotonic() - restarted, 1)
        cut = cluster.leader(self.vhost, self.queue)
        figures["partitioned"] = cut.name.split("@")[0]
        parted = time.monotonic()
        cluster.partition(cut)
        self.count += 1
        figures["leader_in_partition"] = self._new_leader(cut).name.split("@")[0]
        time.sleep(max(0.0, self.partition - (time.monotonic() - parted)))
        healed = time.monotonic()
        cluster.heal(cut)
        cluster.wait_whole()
        figures["heal_s"] = round(time.monotonic() - healed, 1)


class ResourceAlarm(OnceInBackground):
    """The memory alarm of one node of a private cluster raised at ``at`` for ``duration``
    seconds (RabbitMQ then blocks publishing on every node), then cleared. Meanwhile, and
    after, the workers' ``subreq_broker_blocked`` gauges are read from their metrics
    endpoints."""

    name = "alarms"

    def __init__(
        self,
        cluster: Cluster,
        node: Node,
        ports: list[int],
        *,
        at: float,
        duration: float,
        busy: Callable[[threading.Event], None] | None = None,
    ) -> None:
        self.busy = busy
        """Run on a thread of its own from just before the alarm until it is cleared (the
        event set then): queues work that keeps the workers publishing through it
        (RabbitMQ blocks a connection, and says so, only once it publishes)."""
        super().__init__(at)
        self.cluster = cluster
        self.node = node
        self.ports = ports
        self.duration = duration
        self.count = 0
        self.blocked_seen: dict[int, set[str]] = {port: set() for port in ports}
        """Per worker (metrics port), the connections the gauge showed blocked."""
        self.blocked_after: dict[int, set[str]] = {}
        """The same, read once the alarm was cleared and the gauges settled."""

    def _read(self, port: int) -> set[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        return {
            line.split('connection="', 1)[1].split('"', 1)[0]
            for line in text.splitlines()
            if line.startswith("subreq_broker_blocked{") and line.rstrip().endswith(" 1.0")
        }

    def act(self) -> None:
        stop = threading.Event()
        busy = None
        if self.busy is not None:
            busy = threading.Thread(target=self.busy, args=(stop,), daemon=True)
            busy.start()
        try:
            self._raise_and_clear()
        finally:
            stop.set()
            if busy is not None:
                busy.join(30)

    def _raise_and_clear(self) -> None:
        self.cluster.alarm(self.node, True)
        self.count += 1
        try:
            end = time.monotonic() + self.duration
            while time.monotonic() < end:
                for port in self.ports:
                    with contextlib.suppress(OSError):
                        self.blocked_seen[port] |= self._read(port)
                time.sleep(0.2)
        finally:
            self.cluster.alarm(self.node, False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            self.blocked_after = {port: self._read(port) for port in self.ports}
            if not any(self.blocked_after.values()):
                break
            time.sleep(0.2)
