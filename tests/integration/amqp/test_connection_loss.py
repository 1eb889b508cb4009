"""The broker drops every connection mid-stream: the worker reconnects, nothing is lost."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pika
import pytest
from pika.exceptions import AMQPError
from pika.spec import Basic, BasicProperties

from tests.integration.amqp.conftest import SpawnWorker
from tests.integration.amqp.support import (
    Broker,
    close_all_connections,
    count,
    processed_keys,
    seed_accounts,
    submit_body,
    unpublished,
    url_of,
    wait_until,
)
from workflow.contract.names import COMMANDS_EXCHANGE, DEAD_QUEUE
from workflow.domain.catalog import Catalog
from workflow.persistence.database import Database

STREAM = 300


class ResilientClient:
    """What a careful publisher does: confirms, and on a lost connection reconnect and
    publish again with the SAME message_id (the service deduplicates). Its reply queue is
    durable and acknowledged by hand, so no reply is lost while it is disconnected."""

    def __init__(self, url: str, reply_queue: str) -> None:
        self.url = url
        self.reply_queue = reply_queue
        self.replies: dict[str, list[bytes]] = {}
        self.reconnects = 0
        self._open()

    def _open(self) -> None:
        params = pika.URLParameters(self.url)
        params.client_properties = {"connection_name": "test-resilient-client"}
        params.heartbeat = 0
        self.connection = pika.BlockingConnection(params)
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()
        self.channel.queue_declare(self.reply_queue, durable=True)
        self.channel.basic_consume(self.reply_queue, self._on_reply)

    def _on_reply(
        self, channel: Any, method: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        self.replies.setdefault(props.correlation_id, []).append(body)
        channel.basic_ack(method.delivery_tag)

    def _reconnect(self) -> None:
        self.reconnects += 1
        with contextlib.suppress(Exception):
            self.connection.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                self._open()
                return
            except AMQPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def publish(self, routing_key: str, body: dict[str, Any], message_id: str) -> None:
        for _ in range(5):
            try:
                self.channel.basic_publish(
                    COMMANDS_EXCHANGE,
                    routing_key,
                    orjson.dumps(body),
                    BasicProperties(
                        content_type="application/json",
                        delivery_mode=pika.DeliveryMode.Persistent,
                        message_id=message_id,
                        correlation_id=message_id,
                        reply_to=self.reply_queue,
                    ),
                    mandatory=True,
                )
                return
            except AMQPError:
                self._reconnect()
        raise AssertionError(f"could not publish {message_id}")

    def pump(self) -> None:
        try:
            self.connection.process_data_events(time_limit=0.05)
        except AMQPError:
            self._reconnect()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.channel.queue_delete(self.reply_queue)
        with contextlib.suppress(Exception):
            self.connection.close()


@pytest.fixture
def resilient_client(amqp_url: str, broker: Broker) -> Iterator[ResilientClient]:
    client = ResilientClient(amqp_url, f"test-replies-{uuid.uuid4()}")
    yield client
    client.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_worker_reconnects_after_the_broker_closes_every_connection_and_loses_no_command(
    pg: Database,
    catalog: Catalog,
    broker: Broker,
    resilient_client: ResilientClient,
    spawn_worker: SpawnWorker,
) -> None:
    accounts = seed_accounts(pg, catalog, STREAM)
    worker = spawn_worker(url_of(pg))
    wait_until(lambda: broker.consumers() == 1, timeout=20, what="the worker to consume")

    cut = threading.Thread(target=close_all_connections, args=(broker.vhost,))
    ids = [f"stream-{i}" for i in range(STREAM)]
    try:
        for n, (account_id, message_id) in enumerate(zip(accounts, ids, strict=True)):
            if n == STREAM // 3:
                cut.start()  # the cut lands while commands are flowing and being processed
            if n == 2 * STREAM // 3:
                cut.join(30)  # and the last third is surely published after it
            resilient_client.publish("request.submit", submit_body(account_id), message_id)
            resilient_client.pump()
    finally:
        if cut.ident is not None:
            cut.join(30)
    assert resilient_client.reconnects >= 1, "the client never noticed the cut"

    # The broker closed our connections too, so the test inspector reconnects as well.
    broker.reconnect()
    wait_until(
        lambda: all(i in resilient_client.replies for i in ids),
        timeout=60,
        what="a reply to every command",
        pump=resilient_client.pump,
    )
    assert worker.running(), "the worker died instead of reconnecting"
    wait_until(lambda: unpublished(pg) == 0, timeout=20, what="the relay to reconnect and publish")
    assert sorted(processed_keys(pg)) == sorted(f"id:{i}" for i in ids)
    assert count(pg, "requests") == STREAM
    assert count(pg, "audit_log") == 0, "a command was processed twice and then refused"
    for message_id in ids:
        replies = resilient_client.replies[message_id]
        assert {*replies} == {replies[0]}, message_id
        assert orjson.loads(replies[0])["ok"], replies[0]
    assert broker.depth() == 0
    assert broker.depth(DEAD_QUEUE) == 0
