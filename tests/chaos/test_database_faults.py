"""Scenario 3: the database goes away under load.

Every few seconds every backend of the scenario's database is terminated
(``pg_terminate_backend``, only for *this* database: other sessions share the server),
and once, mid-load, the database refuses all connections for a few seconds
(``ALLOW_CONNECTIONS false``, its backends terminated). Commands in flight meet the
failure in the middle of their transaction, or at commit. Pass: they are retried,
none lost, none doubled, every promise of the kill scenario kept with no worker
restarted, every email delivered exactly once.

The crash and restart of the whole server (``pg_ctl stop -m immediate``, then started
again) would take every database of the shared server down, other test sessions' too:
that scenario runs on a PostgreSQL server of its own (``private_postgres.py``), with half
the commands of the others.
"""

from __future__ import annotations

import pytest

from tests.chaos.faults import DatabaseFaults, PostgresRestart
from tests.chaos.private_postgres import PrivatePostgres
from tests.chaos.scenario import LoadScenario, assert_kept
from tests.chaos.sizes import Sizes
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


def test_postgres_restarted_mid_load_loses_nothing_and_doubles_nothing(
    restartable: tuple[Stack, PrivatePostgres],
    sink: MailSink,
    sizes: Sizes,
    catalog: Catalog,
    request: pytest.FixtureRequest,
) -> None:
    stack, server = restartable
    with LoadScenario("postgres restart", stack, sink, sizes, catalog, request) as scenario:
        accounts = scenario.start(sizes.accounts, WORKERS)
        restart = PostgresRestart(server, at=sizes.seconds / 2)
        verdict = scenario.run(accounts, sizes.commands // 2, [restart])
    assert_kept(verdict, stack)
    assert restart.count == server.restarts == 1
