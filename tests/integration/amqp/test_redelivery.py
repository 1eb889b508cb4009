"""Crashes between commit and ack: redelivered commands are answered again, with one effect."""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from consumers.consumer import CommandConsumer
from tests.integration.amqp.conftest import SpawnWorker
from tests.integration.amqp.support import (
    Broker,
    RawClient,
    account_locked,
    count,
    processed_keys,
    publish_submits,
    running_consumer,
    seed_accounts,
    submit_body,
    url_of,
    wait_until,
)
from workflow.app.service import CommandService, Outcome
from workflow.contract.names import DEAD_QUEUE
from workflow.domain.catalog import Catalog
from workflow.persistence.database import Database

BURST = 300
STALL_AT = 80
"""Its account stays locked during the burst: the kill lands with a batch in hand."""


class RecordingService(CommandService):
    """The real service, remembering what each batch it handled produced."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handled: list[tuple[str | None, Outcome]] = []

    def handle_batch(
        self, items: Sequence[tuple[str, Any, str | None]], traces: Any = None
    ) -> list[Outcome]:
        outcomes = super().handle_batch(items, traces)
        self.handled.extend(
            (message_id, o) for (_, _, message_id), o in zip(items, outcomes, strict=True)
        )
        return outcomes


@pytest.mark.postgres
def test_command_redelivered_after_a_crash_between_commit_and_ack_is_answered_once_more(
    amqp_url: str, pg: Database, catalog: Catalog, broker: Broker, client: RawClient
) -> None:
    seed_accounts(pg, catalog, 1, owner=True)
    service = RecordingService(pg, catalog)
    closed: list[int] = []

    def lose_the_broker_once() -> None:
        """Runs after the batch committed, before its reply and ack are sent."""
        if not closed:
            closed.append(broker.close_connections("subreq-commands"))

    consumer = CommandConsumer(
        amqp_url, service, stop=threading.Event(), batch_size=1, on_commit=lose_the_broker_once
    )
    with running_consumer(consumer):
        client.publish(
            "request.submit", submit_body("acct-0"), message_id="m-1", correlation_id="c-1"
        )
        reply = client.reply_to("c-1", timeout=30)
        assert reply.json()["ok"], f"the redelivery was not answered from the store: {reply.json()}"
        # The consumer reconnected by itself and keeps serving.
        client.publish(
            "request.get",
            {
                "request_id": reply.json()["result"]["request"]["request_id"],
                "actor_id": "acct-0-owner",
            },
            message_id="m-2",
            correlation_id="c-2",
        )
        assert client.reply_to("c-2").json()["ok"]

    assert closed == [1], "the consumer's connection was not found and closed"
    first, redelivered = [o for mid, o in service.handled if mid == "m-1"]
    assert not first.duplicate
    assert redelivered.duplicate, "the redelivery was processed again instead of answered"
    assert redelivered.reply == first.reply
    assert all(r.body == first.reply for r in client.replies_to("c-1"))
    assert count(pg, "requests") == 1
    assert processed_keys(pg) == ["id:m-1"]
    assert count(pg, "outbox", type="request.submitted") == 1
    assert count(pg, "outbox", type="notification.requested") == 1
    assert broker.depth() == 0
    assert broker.depth(DEAD_QUEUE) == 0


@pytest.mark.postgres
@pytest.mark.slow
def test_worker_killed_mid_burst_and_restarted_gives_every_command_exactly_one_effect(
    pg: Database,
    catalog: Catalog,
    broker: Broker,
    client: RawClient,
    spawn_worker: SpawnWorker,
) -> None:
    accounts = seed_accounts(pg, catalog, BURST)
    first = spawn_worker(url_of(pg), "--no-relay", "--batch", "20")
    wait_until(lambda: broker.consumers() == 1, timeout=20, what="the first worker to consume")

    ids = [f"burst-{i}" for i in range(BURST)]
    with account_locked(pg, accounts[STALL_AT]):
        publish_submits(client, accounts, ids)
        wait_until(lambda: count(pg, "processed_commands") >= 40, timeout=20, what="progress")
        first.send_signal(signal.SIGKILL)  # with a batch in hand, waiting on the lock
        assert first.wait(10) == -signal.SIGKILL
    done_before_kill = count(pg, "processed_commands")
    assert done_before_kill < BURST, "the burst finished before the kill: make it bigger"

    spawn_worker(url_of(pg), "--no-relay", "--batch", "20")

    wait_until(
        lambda: all(client.replies_to(i) for i in ids),
        timeout=60,
        what="a reply to every command",
        pump=client.pump,
    )
    wait_until(lambda: broker.depth() == 0, timeout=10, what="an empty command queue")

    assert sorted(processed_keys(pg)) == sorted(f"id:{i}" for i in ids)
    assert count(pg, "requests") == BURST
    assert count(pg, "outbox") == BURST  # one request.submitted each (no owner to notify)
    assert count(pg, "audit_log") == 0, "a command was processed twice and then refused"
    request_ids = set()
    for message_id in ids:
        replies = client.replies_to(message_id)
        assert {r.body for r in replies} == {replies[0].body}, message_id
        body = replies[0].json()
        assert body["ok"], body
        request_ids.add(body["result"]["request"]["request_id"])
    assert len(request_ids) == BURST
    assert broker.depth(DEAD_QUEUE) == 0
