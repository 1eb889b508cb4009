"""SIGTERM under load: a clean, prompt exit that loses nothing."""

from __future__ import annotations

import signal
import time

import pytest

from tests.integration.amqp.conftest import SpawnWorker
from tests.integration.amqp.support import (
    Broker,
    RawClient,
    account_locked,
    count,
    processed_keys,
    publish_submits,
    seed_accounts,
    url_of,
    wait_until,
)
from workflow.contract.names import DEAD_QUEUE
from workflow.domain.catalog import Catalog
from workflow.persistence.database import Database

LOAD = 300
STALL_AT = 60
"""The account of this command is locked while the load goes in, so however fast the
worker is, SIGTERM lands with work in hand and most of the load still queued."""
SMALL_BATCHES = ("--prefetch", "40", "--batch", "10")


@pytest.mark.postgres
@pytest.mark.slow
def test_sigterm_during_load_exits_0_promptly_and_every_command_is_done_or_still_queued(
    pg: Database,
    catalog: Catalog,
    broker: Broker,
    client: RawClient,
    spawn_worker: SpawnWorker,
) -> None:
    accounts = seed_accounts(pg, catalog, LOAD)
    worker = spawn_worker(url_of(pg), *SMALL_BATCHES)
    wait_until(lambda: broker.consumers() == 1, timeout=20, what="the worker to consume")
    ids = [f"load-{i}" for i in range(LOAD)]
    with account_locked(pg, accounts[STALL_AT]):
        publish_submits(client, accounts, ids)
        wait_until(lambda: count(pg, "processed_commands") >= 30, timeout=20, what="progress")
        worker.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.5)  # the worker waits on the lock with a batch in hand
    assert worker.wait(15) == 0, worker.log()[-3000:]
    stopped_after = time.monotonic() - signalled
    assert stopped_after < 5, f"the worker took {stopped_after:.1f}s to stop"

    processed = count(pg, "processed_commands")
    assert processed < LOAD, "the load was over before SIGTERM: make it bigger"
    wait_until(
        lambda: processed + broker.depth() >= LOAD,
        timeout=10,
        what=f"every command processed or back in the queue ({processed} processed)",
    )
    assert processed + broker.depth() == LOAD, "a command was processed but not acknowledged"
    for message_id in (k.removeprefix("id:") for k in processed_keys(pg)):
        client.reply_to(message_id, timeout=5)  # answered before the worker left

    spawn_worker(url_of(pg), *SMALL_BATCHES)
    wait_until(
        lambda: all(client.replies_to(i) for i in ids),
        timeout=60,
        what="a reply to every command",
        pump=client.pump,
    )
    assert sorted(processed_keys(pg)) == sorted(f"id:{i}" for i in ids)
    assert count(pg, "requests") == LOAD
    assert count(pg, "audit_log") == 0
    assert all(r.json()["ok"] for r in client.replies)
    wait_until(lambda: broker.depth() == 0, timeout=10, what="an empty command queue")
    assert broker.depth(DEAD_QUEUE) == 0
