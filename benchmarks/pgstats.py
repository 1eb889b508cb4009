"""What a measured phase cost PostgreSQL: WAL bytes, writing and WAL-flushing commits, and
the CPU of the run's own server sessions.

The server may be shared with other work, so the figures are the run's database's own
where the server can tell: ``pg_walinspect`` reads the WAL between the phase's two
positions, keeps the transactions that touched a relation of this database, and sums
their records (commit records included). Where it cannot (no ``pg_walinspect``, or a
checkpoint recycled the segments already), the whole server's WAL position and
transaction counter are used, and the figures say so. A checkpoint just before the phase
makes every run start alike (each page's first change after it carries a full image) and
keeps the phase's WAL from being recycled while it runs.

Writing commits are transactions that were given an id; the relay's marks commit without
waiting for the disk, so the WAL-flushing commits are the others.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg

from benchmarks.procs import sample
from benchmarks.services import libpq_url

RUN_WAL = """
WITH records AS (
    SELECT xid, record_length,
           substring(block_ref from 'rel [0-9]+/([0-9]+)/')::oid AS db
    FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn)
), ours AS (
    SELECT DISTINCT xid FROM records
    WHERE db = (SELECT oid FROM pg_database WHERE datname = current_database()) AND xid <> '0'
)
SELECT (SELECT count(*) FROM ours),
       coalesce((SELECT sum(record_length) FROM records WHERE xid IN (SELECT xid FROM ours)), 0)
"""


@dataclass(frozen=True)
class PhaseCost:
    wal_bytes: int
    writing_commits: int
    flushing_commits: int
    backend_cpu_s: float
    scope: str  # "database" (this run's transactions only) or "server" (everything)


class PostgresCounters:
    """Opened on the run's database; :meth:`start` before the phase, :meth:`stop` after."""

    def __init__(self, database_url: str) -> None:
        self.conn = psycopg.connect(libpq_url(database_url), autocommit=True)
        self._inspect = self._walinspect()
        self._start: tuple[str, int, int, dict[int, float]] | None = None
        self._slot = f"subreq_bench_{self.conn.info.backend_pid}"
        self.fallback_reason = ""
        """Why the last phase's figures are the whole server's, if they are."""

    def _walinspect(self) -> bool:
        try:
            self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        except psycopg.Error:
            return False
        return True

    def _position(self) -> tuple[str, int, int]:
        # The insert position, not pg_current_wal_lsn() (the write position): a commit
        # that did not wait for the disk may still sit in the WAL buffers, before it.
        lsn, xid = self._one(
            "SELECT pg_current_wal_insert_lsn()::text, "
            "pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
        )
        marks = self._one("SELECT count(*) FROM outbox_published")[0] if self._has_marks() else 0
        return str(lsn), int(xid), int(marks)

    def _has_marks(self) -> bool:
        return self._one("SELECT to_regclass('outbox_published') IS NOT NULL")[0] is True

    def _one(self, query: str, params: Any = None) -> tuple[Any, ...]:
        row = self.conn.execute(query, params).fetchone()
        assert row is not None
        return tuple(row)

    def _backends(self) -> dict[int, float]:
        """CPU seconds so far of every other session on this database."""
        found = {}
        for (pid,) in self.conn.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall():
            try:
                found[int(pid)] = sample(int(pid)).cpu_seconds
            except (OSError, ValueError):
                continue  # ended meanwhile
        return found

    def start(self) -> None:
        self.conn.execute("CHECKPOINT")
        if self._inspect:
            # A temporary slot of this session keeps the phase's WAL from being recycled by
            # a checkpoint (other work on the server may force some) until it is read.
            self.conn.execute(
                "SELECT pg_create_physical_replication_slot(%s, true, true)", (self._slot,)
            )
        lsn, xid, marks = self._position()
        self._start = (lsn, xid, marks, self._backends())

    def stop(self) -> PhaseCost:
        if self._start is None:
            raise RuntimeError("stop() before start()")
        lsn0, xid0, marks0, cpu0 = self._start
        lsn, xid, marks = self._position()
        flushed_to(self.conn, lsn)
        cpu1 = self._backends()
        backend_cpu = sum(cpu1[p] - cpu0[p] for p in cpu1.keys() & cpu0.keys())
        relay_marks = marks - marks0
        if self._inspect:
            try:
                writing, wal = self._one(RUN_WAL, (lsn0, lsn))
            except psycopg.Error as exc:  # e.g. the segments are gone already
                self.fallback_reason = " ".join(str(exc).split())
            else:
                flushing = max(int(writing) - relay_marks, 0)
                return PhaseCost(int(wal), int(writing), flushing, backend_cpu, "database")
            finally:  # an error in this session has dropped the temporary slot already
                self.conn.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = %s",
                    (self._slot,),
                )
        wal = self._one("SELECT %s::pg_lsn - %s::pg_lsn", (lsn, lsn0))[0]
        writing = xid - xid0
        flushing = max(writing - relay_marks, 0)
        return PhaseCost(int(wal), writing, flushing, backend_cpu, "server")

    def close(self) -> None:
        self.conn.close()


def flushed_to(conn: psycopg.Connection[Any], lsn: str, timeout: float = 5.0) -> None:
    """Until the server has flushed its WAL up to ``lsn``: pg_walinspect reads only flushed
    WAL, and commits that do not wait for the disk (the relay's marks) leave the flush
    behind for up to three ``wal_writer_delay``."""
    deadline = time.monotonic() + timeout
    while not _flushed(conn, lsn):
        if time.monotonic() > deadline:
            return  # the range is read anyway; an error there falls back to the server
        time.sleep(0.02)


def _flushed(conn: psycopg.Connection[Any], lsn: str) -> bool:
    row = conn.execute("SELECT pg_current_wal_flush_lsn() >= %s::pg_lsn", (lsn,)).fetchone()
    return bool(row and row[0])
