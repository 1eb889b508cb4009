"""``subreq dlq list`` reads dead letters without removing them; ``replay`` moves them back.

Dead letters are published straight to ``subreq.commands.dead`` the way the consumer
(default exchange, ``x-subreq-error`` and ``x-subreq-routing-key``) and the broker (its
dead-letter exchange, ``x-death``) put them there; no worker runs, so what a replay
publishes stays in ``subreq.commands`` to be looked at.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pika
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from typer.testing import CliRunner

from consumers.amqp.connection import connect
from consumers.amqp.topology import declare_topology
from consumers.cli import app
from consumers.deadletters import peek, replay
from tests import services
from tests.integration.helpers import SEATS
from workflow.contract.names import (
    COMMANDS_EXCHANGE,
    COMMANDS_QUEUE,
    DEAD_EXCHANGE,
    DEAD_QUEUE,
    ERROR_HEADER,
    REPLAYS_HEADER,
    ROUTING_KEY_HEADER,
)

SUBMIT = {"account_id": "acme", "actor_id": "acme-admin", "changes": SEATS}
REPLY_TO = "amq.rabbitmq.reply-to.g1hkABNyYWJiaXRAbG9jYWxob3N0AAAAAAAAAAAAAAAAAAAA.dGVzdA=="
"""A direct reply-to address as the worker sees it: expanded by the broker, so it may be
published again (only the bare ``amq.rabbitmq.reply-to`` needs a consuming channel)."""


class Queues:
    """A publisher of dead letters and a look into the two queues."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: BlockingConnection = connect(url, name="test-dlq")
        self.channel: BlockingChannel = self.connection.channel()
        self.channel.confirm_delivery()

    def bury(
        self,
        message_id: str,
        routing_key: str = "request.submit",
        body: bytes = orjson.dumps(SUBMIT),
        error: str = "changes: Field required",
        **headers: Any,
    ) -> None:
        """A dead letter as the consumer writes it."""
        self.channel.basic_publish(
            "",
            DEAD_QUEUE,
            body,
            pika.BasicProperties(
                content_type="application/json",
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=message_id,
                correlation_id=f"corr-{message_id}",
                reply_to=REPLY_TO,
                headers={ERROR_HEADER: error, ROUTING_KEY_HEADER: routing_key, **headers},
            ),
            mandatory=True,
        )

    def bury_by_broker(self, message_id: str, routing_key: str = "request.decide") -> None:
        """A dead letter as the broker's delivery limit writes it: original routing key,
        through the dead-letter exchange, with ``x-death``."""
        death = {
            "reason": "delivery_limit",
            "queue": COMMANDS_QUEUE,
            "exchange": COMMANDS_EXCHANGE,
            "routing-keys": [routing_key],
            "count": 1,
            "time": datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        }
        self.channel.basic_publish(
            DEAD_EXCHANGE,
            routing_key,
            b'{"request_id": "r-1"}',
            pika.BasicProperties(message_id=message_id, headers={"x-death": [death]}),
            mandatory=True,
        )

    def depth(self, queue: str) -> int:
        """Messages ready in ``queue`` once the count holds still: the dead-letter queues are
        quorum queues, whose count takes back requeued messages a moment after the
        connection that held them closed."""
        deadline = time.monotonic() + 5
        count = self._count(queue)
        while time.monotonic() < deadline:
            time.sleep(0.3)
            again = self._count(queue)
            if again == count:
                break
            count = again
        return count

    def _count(self, queue: str) -> int:
        return int(self.channel.queue_declare(queue, passive=True).method.message_count)

    def drain(self, queue: str) -> list[tuple[str, pika.BasicProperties, bytes]]:
        found = []
        while True:
            method, properties, body = self.channel.basic_get(queue, auto_ack=True)
            if method is None:
                return found
            found.append((method.routing_key, properties, body))

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


@pytest.fixture
def queues(amqp_url: str) -> Iterator[Queues]:
    """The vhost is shared by the session: start from empty command and dead queues."""
    q = Queues(amqp_url)
    declare_topology(q.channel)
    q.channel.queue_purge(COMMANDS_QUEUE)
    q.channel.queue_purge(DEAD_QUEUE)
    yield q
    q.channel.queue_purge(COMMANDS_QUEUE)
    q.channel.queue_purge(DEAD_QUEUE)
    q.close()


def cli(
    monkeypatch: pytest.MonkeyPatch, url: str, *args: str, input: str | None = None
) -> tuple[int, str]:
    monkeypatch.setenv("SUBREQ_AMQP_URL", url)
    result = CliRunner().invoke(app, ["dlq", *args], input=input)
    return result.exit_code, result.output


# --- list ---------------------------------------------------------------------------------


def test_peek_reads_every_dead_letter_in_order_and_leaves_them(queues: Queues) -> None:
    queues.bury("m-1")
    queues.bury("m-2", "request.explode", b"not json", "unknown routing key 'request.explode'")
    queues.bury_by_broker("m-3")
    first = peek(queues.url)
    assert [letter.message_id for letter in first] == ["m-1", "m-2", "m-3"]
    assert [letter.routing_key for letter in first] == [
        "request.submit",
        "request.explode",
        "request.decide",
    ]
    assert first[0].error == "changes: Field required"
    assert first[2].error is None
    assert first[2].death is not None
    assert first[2].death["reason"] == "delivery_limit"
    assert queues.depth(DEAD_QUEUE) == 3
    again = peek(queues.url)
    assert [letter.message_id for letter in again] == ["m-1", "m-2", "m-3"], "order is kept"
    assert [letter.message_id for letter in peek(queues.url, limit=2)] == ["m-1", "m-2"]
    assert queues.depth(DEAD_QUEUE) == 3


def test_dlq_list_shows_key_id_error_death_and_body(
    monkeypatch: pytest.MonkeyPatch, queues: Queues
) -> None:
    queues.bury("m-1")
    queues.bury_by_broker("m-2")
    code, out = cli(monkeypatch, queues.url, "list")
    assert code == 0, out
    for part in (
        "request.submit  message_id m-1",
        "error:  changes: Field required",
        '"account_id":"acme"',
        "request.decide  message_id m-2",
        "death:  delivery_limit in subreq.commands",
    ):
        assert part in out
    code, out = cli(monkeypatch, queues.url, "list", "--json")
    assert code == 0, out
    listed = json.loads(out)
    assert [entry["message_id"] for entry in listed] == ["m-1", "m-2"]
    assert listed[0]["error"] == "changes: Field required"
    assert orjson.loads(listed[0]["body"]) == SUBMIT
    assert queues.depth(DEAD_QUEUE) == 2


def test_dlq_list_of_an_empty_queue(monkeypatch: pytest.MonkeyPatch, queues: Queues) -> None:
    assert cli(monkeypatch, queues.url, "list") == (0, "no dead letters\n")


# --- replay -------------------------------------------------------------------------------


def test_replay_republishes_with_the_original_routing_key_and_properties(
    queues: Queues,
) -> None:
    queues.bury("m-1", **{"x-tenant": "t-42"})
    queues.bury("m-2")
    result = replay(queues.url, lambda letter: letter.message_id == "m-1")
    assert result.failure is None
    assert [letter.message_id for letter in result.replayed] == ["m-1"]
    [(routing_key, properties, body)] = queues.drain(COMMANDS_QUEUE)
    assert routing_key == "request.submit"
    assert body == orjson.dumps(SUBMIT)
    assert properties.message_id == "m-1", "idempotency still protects"
    assert properties.correlation_id == "corr-m-1"
    assert properties.reply_to == REPLY_TO
    assert properties.content_type == "application/json"
    assert properties.delivery_mode == 2
    headers = properties.headers or {}
    assert ERROR_HEADER not in headers
    assert ROUTING_KEY_HEADER not in headers
    assert headers["x-tenant"] == "t-42"
    assert headers[REPLAYS_HEADER] == 1
    assert [letter.message_id for letter in peek(queues.url)] == ["m-2"]


def test_a_broker_dead_letter_goes_back_under_its_own_routing_key(queues: Queues) -> None:
    queues.bury_by_broker("m-1", "request.cancel")
    assert len(replay(queues.url, lambda _: True).replayed) == 1
    [(routing_key, properties, _)] = queues.drain(COMMANDS_QUEUE)
    assert routing_key == "request.cancel"
    assert "x-death" not in (properties.headers or {})
    assert queues.depth(DEAD_QUEUE) == 0


def test_dlq_replay_message_id_yes(monkeypatch: pytest.MonkeyPatch, queues: Queues) -> None:
    queues.bury("m-1")
    queues.bury("m-2")
    code, out = cli(monkeypatch, queues.url, "replay", "--message-id", "m-2", "--yes")
    assert code == 0, out
    assert "replayed request.submit (message_id m-2)" in out
    assert [p.message_id for _, p, _ in queues.drain(COMMANDS_QUEUE)] == ["m-2"]
    assert queues.depth(DEAD_QUEUE) == 1


def test_dlq_replay_all_asks_first(monkeypatch: pytest.MonkeyPatch, queues: Queues) -> None:
    queues.bury("m-1")
    queues.bury("m-2")
    code, out = cli(monkeypatch, queues.url, "replay", "--all", input="n\n")
    assert code == 1
    assert "Replay these 2 to subreq.commands?" in out
    assert queues.depth(DEAD_QUEUE) == 2
    assert queues.depth(COMMANDS_QUEUE) == 0
    code, out = cli(monkeypatch, queues.url, "replay", "--all", input="y\n")
    assert code == 0, out
    assert queues.depth(DEAD_QUEUE) == 0
    assert [p.message_id for _, p, _ in queues.drain(COMMANDS_QUEUE)] == ["m-1", "m-2"]


def test_dlq_replay_needs_exactly_one_selection(
    monkeypatch: pytest.MonkeyPatch, queues: Queues
) -> None:
    assert cli(monkeypatch, queues.url, "replay")[0] == 2
    assert cli(monkeypatch, queues.url, "replay", "--all", "--message-id", "m-1")[0] == 2


def test_dlq_replay_of_an_unknown_message_id_fails(
    monkeypatch: pytest.MonkeyPatch, queues: Queues
) -> None:
    queues.bury("m-1")
    code, out = cli(monkeypatch, queues.url, "replay", "--message-id", "nope", "--yes")
    assert code == 1
    assert "no dead letter with message_id nope" in out
    assert queues.depth(DEAD_QUEUE) == 1


def test_an_unroutable_replay_keeps_the_dead_letter(amqp_url: str) -> None:
    """A vhost with the dead letters but no command queue: the broker returns the copy,
    so the dead letter is not acknowledged and stays."""
    url = services.create_vhost(amqp_url)
    try:
        q = Queues(url)
        q.channel.exchange_declare(COMMANDS_EXCHANGE, exchange_type="topic", durable=True)
        q.channel.queue_declare(DEAD_QUEUE, durable=True)
        q.bury("m-1")
        result = replay(url, lambda _: True)
        assert result.replayed == []
        assert result.failure is not None
        assert "routed request.submit to no queue" in result.failure
        assert q.depth(DEAD_QUEUE) == 1
        q.close()
    finally:
        services.delete_vhost(url)
