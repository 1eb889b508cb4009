"""Scenario 2: the broker drops every connection of the vhost, several times, under load.

``rabbitmqctl close_all_connections --vhost <ours>`` (other vhosts on the node are left
alone) closes the workers' connections -- consumer, relay, notifier -- and the
harness's own. Pass: the same promises as with killed workers, with the very processes
started first (they recover by themselves), every email delivered exactly once.
"""

from __future__ import annotations

import pytest

from tests.chaos.faults import BrokerDrops
from tests.chaos.scenario import LoadScenario, assert_kept
from tests.chaos.sizes import Sizes
from tests.chaos.smtp import MailSink
from tests.chaos.stack import Stack
from workflow.domain.catalog import Catalog

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.slow]

WORKERS = 2


def test_broker_connection_drops_mid_load_lose_nothing_and_double_nothing(
    stack: Stack, sink: MailSink, sizes: Sizes, catalog: Catalog, request: pytest.FixtureRequest
) -> None:
    with LoadScenario("broker drops", stack, sink, sizes, catalog, request) as scenario:
        accounts = scenario.start(sizes.accounts, WORKERS)
        drops = BrokerDrops(stack.vhost, sizes.drop_every, scenario.rng)
        verdict = scenario.run(accounts, sizes.commands, [drops])
    assert_kept(verdict, stack)
    assert verdict.figures["drops"] >= 2, "the load ended before the drops began"
    assert verdict.figures["harness_reconnects"] >= 1, "the drops never reached the vhost"
