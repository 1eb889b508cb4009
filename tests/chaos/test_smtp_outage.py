"""Scenario 4: the SMTP server goes away for a while, then comes back.

Mid-load the server first answers 421 to new mail transactions, then closes its port
(connections refused) for SUBREQ_CHAOS_SMTP_DOWN seconds, then listens again. The
notifiers keep every notification in hand and retry with backoff. Pass: every
notification delivered exactly once (one Message-ID each at the server, every delivery
'sent', one ``notification.sent`` each), some of them only after retries, and every
promise of the other scenarios about the commands.
"""

from __future__ import annotations

import pytest

from tests.chaos.faults import SmtpOutage
from tests.chaos.scenario import LoadScenario, assert_kept
from tests.chaos.sizes import Sizes
from tests.chaos.smtp import MailSink
from tests.chaos.stack import Stack
from workflow.domain.catalog import Catalog

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.slow]

WORKERS = 2


def test_smtp_outage_delays_emails_but_delivers_each_once(
    stack: Stack, sink: MailSink, sizes: Sizes, catalog: Catalog, request: pytest.FixtureRequest
) -> None:
    with LoadScenario("smtp outage", stack, sink, sizes, catalog, request) as scenario:
        accounts = scenario.start(sizes.accounts, WORKERS)
        outage = SmtpOutage(sink, at=sizes.seconds / 4, duration=sizes.smtp_down)
        verdict = scenario.run(accounts, max(100, sizes.commands // 2), [outage])
    assert_kept(verdict, stack)
    assert outage.count == 1, "the load ended before the outage"
    assert verdict.figures["emails_retried"] >= 1, "no notification met the outage"
