"""R11 across processes: two workers racing on the same accounts leave one pending each."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import func, select

from tests.integration.amqp.conftest import SpawnWorker
from tests.integration.amqp.support import (
    Broker,
    RawClient,
    seed_accounts,
    submit_body,
    url_of,
    wait_until,
)
from tests.integration.helpers import member
from workflow.app.service import CommandService
from workflow.domain.catalog import Catalog
from workflow.persistence.database import Database
from workflow.persistence.tables import requests

ACCOUNTS = 8
SUBMITTERS = 8
ONE_AT_A_TIME = ("--no-relay", "--prefetch", "1", "--batch", "1")


@pytest.mark.postgres
@pytest.mark.slow
def test_two_worker_processes_racing_on_the_same_accounts_leave_one_pending_request_each(
    pg: Database,
    catalog: Catalog,
    broker: Broker,
    client: RawClient,
    spawn_worker: SpawnWorker,
) -> None:
    accounts = seed_accounts(pg, catalog, ACCOUNTS)
    admins = CommandService(pg, catalog).handle_batch(
        [
            ("member.upsert", orjson.dumps(member(f"{a}-admin{k}", "admin", a)), None)
            for a in accounts
            for k in range(SUBMITTERS)
        ]
    )
    assert all(o.json()["ok"] for o in admins)
    # prefetch 1: the broker hands the commands out to both workers alternately.
    for _ in range(2):
        spawn_worker(url_of(pg), *ONE_AT_A_TIME)
    wait_until(lambda: broker.consumers() == 2, timeout=20, what="both workers to consume")

    # Interleaved: at any moment both workers hold a submit for the same account.
    sent: dict[str, str] = {}
    for k in range(SUBMITTERS):
        for account_id in accounts:
            message_id = f"{account_id}-submit-{k}"
            client.publish(
                "request.submit",
                submit_body(account_id, actor=f"admin{k}"),
                message_id=message_id,
                correlation_id=message_id,
            )
            sent[message_id] = account_id
    client.wait_replies(len(sent), timeout=60)

    for account_id in accounts:
        replies = [r.json() for r in client.replies if sent[r.correlation_id] == account_id]
        winners = [r["result"]["request"]["request_id"] for r in replies if r["ok"]]
        assert len(winners) == 1, (account_id, replies)
        losers = [r["error"] for r in replies if not r["ok"]]
        assert {e["code"] for e in losers} == {"request_pending"}, losers
        assert all(winners[0] in e["message"] for e in losers), losers
    with pg.engine.connect() as conn:
        per_account = conn.execute(
            select(requests.c.account_id, func.count())
            .where(requests.c.state == "pending")
            .group_by(requests.c.account_id)
        ).all()
        total = conn.execute(select(func.count()).select_from(requests)).scalar_one()
    assert sorted(per_account) == [(a, 1) for a in sorted(accounts)]
    assert total == ACCOUNTS
