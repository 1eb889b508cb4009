"""Unusable commands and infrastructure failures end in subreq.commands.dead; refusals never."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest

from consumers.consumer import CommandConsumer
from tests.integration.amqp.support import (
    SEATS,
    Broker,
    RawClient,
    count,
    running_consumer,
    running_worker,
    seed_accounts,
    submit_body,
    url_of,
)
from tests.integration.helpers import account, member
from workflow.app.parsing import MAX_BODY_BYTES
from workflow.app.service import CommandService, Outcome
from workflow.contract.names import DEAD_QUEUE, ERROR_HEADER
from workflow.domain.catalog import Catalog
from workflow.persistence.database import Database

OVERSIZED = orjson.dumps({**member("acme-big", "agent"), "padding": "x" * MAX_BODY_BYTES})

# case -> (routing key, body, what x-subreq-error must mention, field named in the reply)
GARBAGE: dict[str, tuple[str, bytes, str, str | None]] = {
    "not-json": ("request.submit", b'{"account_id": acme', "JSON", None),
    "not-utf8": ("request.submit", b'{"account_id": "\xff\xfe\xfa"}', "UTF-8", None),
    "json-array": ("request.submit", b'[{"account_id": "acme"}]', "object", None),
    "unknown-routing-key": (
        "request.explode",
        orjson.dumps(submit_body("acme")),
        "unknown routing key",
        None,
    ),
    "schema-violation": (
        "request.submit",
        orjson.dumps({"account_id": "acme", "actor_id": "acme-admin"}),
        "changes",
        "changes",
    ),
    "reject-without-comment": (
        "request.decide",
        orjson.dumps({"request_id": "r-1", "actor_id": "acme-owner", "decision": "reject"}),
        "R19",
        "comment",
    ),
    "over-64-kib": ("member.upsert", OVERSIZED, str(MAX_BODY_BYTES), None),
}


def test_garbage_is_answered_acked_and_dead_lettered_with_its_original_body_and_properties(
    amqp_url: str, database: Database, broker: Broker, client: RawClient
) -> None:
    assert len(OVERSIZED) > MAX_BODY_BYTES
    with running_worker(amqp_url, url_of(database), relay=False):
        # Good and bad commands interleaved in one burst: the bad ones poison nothing.
        client.publish("account.upsert", account("acme"), message_id="ok-1", correlation_id="ok-1")
        for case, (routing_key, body, _, _) in GARBAGE.items():
            client.publish(
                routing_key,
                body,
                message_id=f"bad-{case}",
                correlation_id=f"corr-{case}",
                headers={"x-tenant": "t-42", "x-case": case},
            )
        client.publish(
            "request.submit",
            b"\x00\x01binary",
            message_id="bad-silent",
            reply=False,
            headers={"x-case": "silent"},
            content_type="application/octet-stream",
        )
        client.publish(
            "member.upsert", member("acme-admin", "admin"), message_id="ok-2", correlation_id="ok-2"
        )
        client.publish(
            "request.submit", submit_body("acme"), message_id="ok-3", correlation_id="ok-3"
        )

        for case, (_, _, _, field) in GARBAGE.items():
            reply = client.reply_to(f"corr-{case}").json()
            assert reply["ok"] is False, (case, reply)
            assert reply["error"]["code"] == "invalid_message", (case, reply)
            assert reply["error"]["details"], (case, reply)
            if field is not None:
                fields = [d.get("field") for d in reply["error"]["details"]]
                assert field in fields, (case, reply)
        for good in ("ok-1", "ok-2", "ok-3"):
            assert client.reply_to(good).json()["ok"], client.reply_to(good).json()

        dead = {m.properties.message_id: m for m in broker.collect(DEAD_QUEUE, len(GARBAGE) + 1)}

    assert broker.depth() == 0, "an unusable command was not acknowledged"
    assert sorted(dead) == sorted([f"bad-{c}" for c in GARBAGE] + ["bad-silent"])
    for case, (routing_key, body, mentions, _) in GARBAGE.items():
        copy = dead[f"bad-{case}"]
        assert copy.body == body, case
        assert copy.correlation_id == f"corr-{case}", case
        assert copy.properties.content_type == "application/json", case
        assert copy.properties.reply_to == client.reply_queue, case
        assert copy.headers["x-tenant"] == "t-42", case
        assert copy.headers["x-case"] == case, case
        assert mentions in copy.headers[ERROR_HEADER], (case, copy.headers[ERROR_HEADER])
        # the routing key is on the copy too (as a header: it was re-published to the queue)
        assert routing_key in {copy.routing_key, copy.headers.get("x-subreq-routing-key")}
    silent = dead["bad-silent"]
    assert silent.body == b"\x00\x01binary"
    assert silent.properties.content_type == "application/octet-stream"
    assert silent.headers["x-case"] == "silent"
    assert "JSON" in silent.headers[ERROR_HEADER]
    assert [r for r in client.replies if r.correlation_id in (None, "bad-silent")] == []
    assert count(database, "requests") == 1


def test_rule_refusals_are_normal_replies_never_dead_letters(
    amqp_url: str, database: Database, catalog: Catalog, broker: Broker, client: RawClient
) -> None:
    seed_accounts(database, catalog, 1, owner=True)
    refusals = {
        "forbidden": ("request.submit", submit_body("acct-0", actor="owner")),
        "unknown_account": ("request.submit", submit_body("nowhere")),
        "out_of_scope": (
            "request.submit",
            {**submit_body("acct-0"), "changes": [{"type": "cancel_account"}]},
        ),
        "invalid_change": (
            "request.submit",
            {**submit_body("acct-0"), "changes": [{**SEATS[0], "quantity": 0}]},
        ),
        "not_found": ("request.get", {"request_id": "missing", "actor_id": "acct-0-owner"}),
    }
    with running_worker(amqp_url, url_of(database), relay=False):
        for code, (routing_key, body) in refusals.items():
            reply = client.call(routing_key, body, message_id=code, correlation_id=code)
            assert reply.json()["ok"] is False
            assert reply.json()["error"]["code"] == code, reply.json()
    assert broker.depth() == 0
    assert broker.depth(DEAD_QUEUE) == 0


class CountingService(CommandService):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attempts = 0

    def handle_batch(
        self, items: Sequence[tuple[str, Any, str | None]], traces: Any = None
    ) -> list[Outcome]:
        self.attempts += 1
        return super().handle_batch(items, traces)


@pytest.fixture
def unreachable_database() -> Iterator[Database]:
    """A PostgreSQL URL on a port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = Database(f"postgresql+psycopg://postgres@127.0.0.1:{port}/subreq?connect_timeout=2")
    yield db
    db.dispose()


def test_command_meeting_a_database_outage_is_retried_then_dead_lettered_naming_it(
    amqp_url: str,
    unreachable_database: Database,
    catalog: Catalog,
    broker: Broker,
    client: RawClient,
) -> None:
    service = CountingService(unreachable_database, catalog)
    retry_delays = (0.05, 0.05)
    consumer = CommandConsumer(
        amqp_url,
        service,
        stop=threading.Event(),
        batch_size=1,
        max_deliveries=2,
        retry_delays=retry_delays,
    )
    body = orjson.dumps(submit_body("acme"))
    with running_consumer(consumer):
        client.publish(
            "request.submit",
            body,
            message_id="db-down",
            correlation_id="db-down-corr",
            headers={"x-tenant": "t-7"},
        )
        (copy,) = broker.collect(DEAD_QUEUE, 1, timeout=30)

    assert broker.depth() == 0
    assert copy.body == body
    assert copy.properties.message_id == "db-down"
    assert copy.correlation_id == "db-down-corr"
    assert copy.properties.content_type == "application/json"
    assert copy.headers["x-tenant"] == "t-7"
    reason = copy.headers[ERROR_HEADER]
    assert "database" in reason, reason
    assert "2 deliveries" in reason, reason
    # two deliveries, each tried once and then once per retry delay
    assert service.attempts == 2 * (len(retry_delays) + 1)
