"""The benchmark's WAL counters read a phase whose last commits did not wait for the disk
(the relay's marks commit that way): such a commit may still sit in the WAL buffers,
past the write position (``pg_current_wal_lsn``), so the phase ends at the insert
position; pg_walinspect reads only flushed WAL; and an error in the counters' session
drops its temporary replication slot."""

from __future__ import annotations

import psycopg
import pytest

from benchmarks.pgstats import PostgresCounters
from benchmarks.services import libpq_url

pytestmark = pytest.mark.postgres


def test_a_phase_ending_in_a_commit_that_did_not_wait_for_the_disk_is_counted(
    postgres_url: str,
) -> None:
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_probe (x int)")
        counters = PostgresCounters(postgres_url)
        try:
            counters.start()
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = off")
                conn.execute("INSERT INTO bench_probe SELECT generate_series(1, 2000)")
            cost = counters.stop()
        finally:
            counters.close()
            conn.execute("DROP TABLE bench_probe")
    assert cost.scope == "database", counters.fallback_reason
    assert cost.wal_bytes > 2000 * 20  # the rows' WAL, read back from the run's own records
    assert cost.writing_commits == 1
