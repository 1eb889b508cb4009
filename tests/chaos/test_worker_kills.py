"""Scenario 1: worker processes killed with SIGKILL every couple of seconds, and restarted.

Meanwhile the harness holds row locks on a fifth of the accounts for 0.6 s every
second, so that batches wait mid-transaction with their deliveries in hand and many
kills hit a transaction in flight (on an idle worker a kill proves little).

Pass: every command has exactly one effect (idempotency records = published ids, one
request per accepted submit, one history entry per transition, one audit row per
refusal, one seat per approval), every command got its reply, never more than one
pending request per account (sampled every 0.2 s during the run), every outbox event
published and seen by a consumer of ``subreq.events`` (duplicates allowed, gaps not),
and no email sent twice.
"""

from __future__ import annotations

import pytest

from tests.chaos.faults import SlowTransactions, WorkerKiller
from tests.chaos.scenario import LoadScenario, assert_kept
from tests.chaos.sizes import Sizes
from tests.chaos.smtp import MailSink
from tests.chaos.stack import Stack
from workflow.domain.catalog import Catalog

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.slow]


def test_workers_killed_mid_load_lose_nothing_and_double_nothing(
    stack: Stack, sink: MailSink, sizes: Sizes, catalog: Catalog, request: pytest.FixtureRequest
) -> None:
    with LoadScenario("workers killed", stack, sink, sizes, catalog, request) as scenario:
        accounts = scenario.start(sizes.accounts, sizes.workers)
        killer = WorkerKiller(stack, sizes.kill_every, scenario.rng)
        slow = SlowTransactions(stack, accounts, every=1.0, hold=0.6, rng=scenario.rng)
        verdict = scenario.run(accounts, sizes.commands, [killer, slow])
    assert_kept(verdict, stack)
    assert verdict.figures["kills"] >= 3, "the load ended before the kills began"
