"""Scenario 3: the database goes away under load.

Every few seconds every backend of the scenario's database is terminated
(``pg_terminate_backend``, only for *this* database: other sessions share the server),
and once, mid-load, the database refuses all connections for a few seconds
(``ALLOW_CONNECTIONS false``, its backends terminated). Commands in flight meet the
failure in the middle of their transaction, or at commit. Pass: they are retried,
none lost, none doubled, every promise of the kill scenario kept with no worker
restarted, every email delivered exactly once.

The full restart of the PostgreSQL cluster (``pg_ctlcluster 15 main restart -m
immediate``) takes every database of the server down, other test sessions' too: it
runs only with SUBREQ_CHAOS_PG_RESTART=1 (see README.md).
"""

from __future__ import annotations

import pytest

from tests.chaos.faults import DatabaseFaults, PostgresRestart
from tests.chaos.scenario import LoadScenario, assert_kept
from tests.chaos.sizes import Sizes, load_sizes
from tests.chaos.smtp import MailSink
from tests.chaos.stack import Stack
from workflow.domain.catalog import Catalog

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.slow]

WORKERS = 2


def test_database_connections_terminated_mid_load_lose_nothing_and_double_nothing(
    stack: Stack, sink: MailSink, sizes: Sizes, catalog: Catalog, request: pytest.FixtureRequest
) -> None:
    with LoadScenario("database faults", stack, sink, sizes, catalog, request) as scenario:
        accounts = scenario.start(sizes.accounts, WORKERS)
        faults = DatabaseFaults(
            stack,
            sizes.db_fault_every,
            scenario.rng,
            outage=sizes.db_outage,
            outage_at=sizes.seconds / 2,
        )
        verdict = scenario.run(accounts, sizes.commands, [faults])
    assert_kept(verdict, stack)
    assert faults.outages == 1, "the load ended before the outage"
    assert faults.terminated >= 3, f"only {faults.terminated} backends were terminated"


@pytest.mark.skipif(
    not load_sizes().pg_restart,
    reason="restarts the whole PostgreSQL server: SUBREQ_CHAOS_PG_RESTART=1 to run it",
)
def test_postgres_restarted_mid_load_loses_nothing_and_doubles_nothing(
    stack: Stack, sink: MailSink, sizes: Sizes, catalog: Catalog, request: pytest.FixtureRequest
) -> None:
    with LoadScenario("postgres restart", stack, sink, sizes, catalog, request) as scenario:
        accounts = scenario.start(sizes.accounts, WORKERS)
        restart = PostgresRestart(at=sizes.seconds / 2)
        verdict = scenario.run(accounts, sizes.commands, [restart])
    assert_kept(verdict, stack)
    assert restart.count == 1
