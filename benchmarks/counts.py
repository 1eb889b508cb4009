"""``python -m benchmarks.counts``: what one command costs PostgreSQL, counted, not timed.

Runs the benchmark's job (each account's admin submits, its owner approves) in this
process through :class:`CommandService` in batches, as the worker does, with the relay's
:func:`relay_batch` after each batch (publishing to nowhere) and the notifier's work on the
emails the batch asked for (its claims, then their ``sent`` outcomes with their
``notification.sent`` events, as :func:`deliveries.exchange` records them; no SMTP), on a
fresh database with nothing else writing. Counted per command, from the server and the
driver:

- WAL bytes, writing commits (transactions given an id: a read-only one flushes nothing)
  and of them the WAL-flushing ones (all but the relay's marks, which do not wait for the
  disk): those of this database's own transactions, read from the WAL with
  ``pg_walinspect`` (``benchmarks/pgstats.py``), so other work on the server is left out;
- row writes: inserts, updates and deletes of ``pg_stat_user_tables``;
- B-tree index entries: each insert and each non-HOT update adds one entry to every index
  of its table (a partial index's skipped rows counted too: an upper bound);
- SQL statements: every statement the driver sent, transaction control left out.

These do not depend on the machine's speed, so they compare two revisions exactly.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from benchmarks import seed, services
from benchmarks.bench import DEFAULT_POSTGRES_URL
from benchmarks.load import approve_body, submit_body
from benchmarks.pgstats import PhaseCost, PostgresCounters, flushed_to
from workflow.app.outbox import PendingEvent, relay_batch
from workflow.app.service import CommandService
from workflow.domain.catalog import load_catalog
from workflow.notifications import deliveries
from workflow.persistence.database import Database

LEASE = timedelta(minutes=5)
"""The notifier's claim lease (its default)."""
CLAIMS = 500
"""Records claimed per exchange: every email of a batch at once."""

TABLE_WRITES = """
SELECT coalesce(sum(n_tup_ins), 0), coalesce(sum(n_tup_upd), 0),
       coalesce(sum(n_tup_del), 0),
       coalesce(sum((n_tup_ins + n_tup_upd - n_tup_hot_upd)
                    * (SELECT count(*) FROM pg_index i WHERE i.indrelid = s.relid)), 0)
FROM pg_stat_user_tables s
"""


WAL_BY_TABLE = """
WITH records AS (
    SELECT xid, record_length, fpi_length,
           substring(block_ref from 'rel [0-9]+/([0-9]+)/')::oid AS db,
           substring(block_ref from 'rel [0-9]+/[0-9]+/([0-9]+)')::oid AS node
    FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn)
), ours AS (
    SELECT DISTINCT xid FROM records
    WHERE db = (SELECT oid FROM pg_database WHERE datname = current_database()) AND xid <> '0'
)
SELECT coalesce(c.relname, '(no relation: commit records)'), sum(record_length), sum(fpi_length)
FROM records LEFT JOIN pg_class c ON c.relfilenode = records.node
WHERE records.xid IN (SELECT xid FROM ours)
GROUP BY 1 ORDER BY 2 DESC
"""
"""WAL bytes per table or index of this database's transactions, from ``pg_walinspect`` (a
record is credited to the first block it touches; full-page images included, and shown
apart)."""


@dataclass(frozen=True)
class Snapshot:
    lsn: str
    inserts: int
    updates: int
    deletes: int
    index_entries: int
    statements: int


@dataclass(frozen=True)
class Counts:
    """Per command, over ``commands`` commands."""

    commands: int
    wal_bytes: float
    writing_commits: float
    flushing_commits: float
    scope: str
    row_writes: float
    index_entries: float
    statements: float

    def lines(self, label: str) -> list[str]:
        return [
            f"| {label} | {self.commands:,} | {self.wal_bytes:,.0f} | {self.writing_commits:.3f}"
            f" | {self.flushing_commits:.3f}"
            f" | {self.row_writes:.2f} | {self.index_entries:.2f} | {self.statements:.2f}"
            f" | {self.scope} |"
        ]


HEADER = [
    "| per command | commands | WAL bytes | writing commits | WAL-flushing commits "
    "| row writes | index entries | SQL statements | WAL scope |",
    "|---|--:|--:|--:|--:|--:|--:|--:|---|",
]


class StatementCounter:
    """Counts what psycopg sends, while :meth:`counting` is active, in this process only."""

    SKIPPED = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def counting(self) -> Iterator[None]:
        original = psycopg.Cursor.execute
        counter = self

        def execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            if not str(query).lstrip().upper().startswith(counter.SKIPPED):
                counter.count += 1
            return original(cursor, query, *args, **kwargs)

        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        try:
            yield
        finally:
            psycopg.Cursor.execute = original  # type: ignore[method-assign]


def snapshot(conn: psycopg.Connection[Any], statements: int) -> Snapshot:
    time.sleep(0.5)  # an ended session's table statistics reach the shared counters
    conn.execute("SELECT pg_stat_clear_snapshot()")
    # The insert position (an asynchronous commit may not be written yet), once flushed.
    (lsn,) = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone() or ("0/0",)
    flushed_to(conn, str(lsn))
    ins, upd, dele, entries = conn.execute(TABLE_WRITES).fetchone() or (0, 0, 0, 0)
    return Snapshot(str(lsn), int(ins), int(upd), int(dele), int(entries), statements)


def wal_by_table(
    conn: psycopg.Connection[Any], before: Snapshot, after: Snapshot, commands: int
) -> list[str]:
    """Where the WAL went, per command, biggest first (Markdown rows)."""
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
    try:
        rows = conn.execute(WAL_BY_TABLE, (before.lsn, after.lsn)).fetchall()
    except psycopg.errors.UndefinedFile as exc:  # a checkpoint recycled the segments
        return [f"(no WAL per table: {exc}; try fewer --accounts)"]
    return [
        "| relation | WAL bytes per command | of which full-page images |",
        "|---|--:|--:|",
        *(
            f"| {name} | {total / commands:,.0f} | {fpi / commands:,.0f} |"
            for name, total, fpi in rows
        ),
    ]


def per_command(before: Snapshot, after: Snapshot, cost: PhaseCost, commands: int) -> Counts:
    def each(name: str) -> float:
        return (getattr(after, name) - getattr(before, name)) / commands

    return Counts(
        commands,
        cost.wal_bytes / commands,
        cost.writing_commits / commands,
        cost.flushing_commits / commands,
        cost.scope,
        each("inserts") + each("updates") + each("deletes"),
        each("index_entries"),
        each("statements"),
    )


def _nowhere(_events: Sequence[PendingEvent]) -> None:
    """The relay's publish, confirmed at once: only the database's side is counted."""


def job(
    service: CommandService, accounts: Sequence[str], rounds: int, batch: int
) -> Iterator[Callable[[], int]]:
    """Units of work: a batch of submits or approvals, then the relay until it is empty."""
    pending: dict[str, str] = {}
    for _ in range(rounds):
        for kind in ("submit", "decide"):
            for start in range(0, len(accounts), batch):
                chunk = accounts[start : start + batch]

                def run(chunk: Sequence[str] = chunk, kind: str = kind) -> int:
                    items = [_command(kind, a, pending) for a in chunk]
                    for account, outcome in zip(chunk, service.handle_batch(items), strict=True):
                        reply = outcome.json()
                        if not reply.get("ok"):
                            raise RuntimeError(f"{kind} for {account} refused: {reply}")
                        request = reply["result"]["request"]
                        if kind == "submit":
                            pending[account] = request["request_id"]
                        else:
                            del pending[account]
                    _notify(service.db)
                    while relay_batch(service.db, _nowhere):
                        pass
                    return len(items)

                yield run


def _notify(db: Database) -> None:
    """The notifier's database work for every due email: claim, then record it sent."""
    while True:
        now = datetime.now(UTC)
        claimed = deliveries.exchange(db, [], now, want=CLAIMS, lease=LEASE).claimed
        if not claimed:
            return
        sent = [
            deliveries.Outcome(c, "sent", now, message_id=f"<{c.notice.notification_id}@bench>")
            for c in claimed
        ]
        deliveries.exchange(db, sent, now, want=0, lease=LEASE)


def _command(kind: str, account: str, pending: dict[str, str]) -> tuple[str, bytes, None]:
    if kind == "submit":
        return "request.submit", submit_body(account), None
    return "request.decide", approve_body(account, pending[account]), None


def measure(postgres_url: str, accounts: int, rounds: int, batch: int) -> tuple[Counts, list[str]]:
    with services.postgres_database(postgres_url) as url:
        ids = seed.account_ids(accounts)
        seed.prepare_subreq(url, ids, 0)
        db = Database(url)
        counter = StatementCounter()
        try:
            service = CommandService(db, load_catalog())
            with services.pg_connect(url) as conn, closing(PostgresCounters(url)) as server:
                server.start()  # after a checkpoint: every run alike
                before = snapshot(conn, counter.count)
                commands = 0
                with counter.counting():
                    for unit in job(service, ids, rounds, batch):
                        commands += unit()
                db.dispose()  # its sessions end, and so hand in their table statistics
                after = snapshot(conn, counter.count)
                cost = server.stop()
                by_table = wal_by_table(conn, before, after, commands)
            return per_command(before, after, cost, commands), by_table
        finally:
            db.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.counts", description=__doc__)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=100, help="commands per transaction")
    args = parser.parse_args(argv)
    if min(args.accounts, args.rounds, args.batch) < 1:
        parser.error("--accounts, --rounds and --batch must be at least 1")
    counts, by_table = measure(args.postgres_url, args.accounts, args.rounds, args.batch)
    print("\n".join([*HEADER, *counts.lines(f"batch {args.batch}"), "", *by_table]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
