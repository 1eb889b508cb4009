"""The outbox relay: committed events on subreq.events, as the contract describes them."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from tests.integration.amqp.conftest import SpawnWorker
from tests.integration.amqp.support import (
    Broker,
    Message,
    RawClient,
    count,
    running_worker,
    seed_accounts,
    submit_body,
    unpublished,
    url_of,
    wait_until,
)
from tests.integration.helpers import account, member
from workflow.app.service import CommandService
from workflow.domain.catalog import Catalog
from workflow.persistence.database import Database
from workflow.persistence.tables import outbox

ROUND = 20
EVENT_FIELDS = {"event_id", "type", "occurred_at", "account_id", "data"}


def outbox_order(db: Database) -> list[tuple[str, str | None]]:
    """(event_id, request_id) of every outbox row, in id order."""
    with db.engine.connect() as conn:
        rows = conn.execute(select(outbox.c.event_id, outbox.c.request_id).order_by(outbox.c.id))
        return [(r.event_id, r.request_id) for r in rows]


def assert_utc(value: str) -> None:
    assert datetime.fromisoformat(value.replace("Z", "+00:00")).utcoffset() == timedelta(0)


def assert_subscription(s: dict[str, Any]) -> None:
    assert s.keys() == {"currency", "billing_cycle", "products"}
    for line in s["products"]:
        assert line.keys() == {"product", "plan", "seats"}


def assert_event_envelope(message: Message) -> dict[str, Any]:
    event: dict[str, Any] = message.json()
    assert event.keys() >= EVENT_FIELDS, event.keys()
    assert message.routing_key == event["type"]
    assert message.properties.type == event["type"]
    assert message.properties.message_id == event["event_id"]
    assert message.properties.delivery_mode == 2, "events must be persistent"
    assert message.properties.content_type == "application/json"
    assert_utc(event["occurred_at"])
    occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
    assert message.properties.timestamp == int(occurred.timestamp())  # contract, 2nd edition
    return event


def test_relay_publishes_each_committed_event_per_contract_in_outbox_order(
    amqp_url: str, database: Database, catalog: Catalog, broker: Broker, client: RawClient
) -> None:
    seed_accounts(database, catalog, 1, owner=True)
    events_queue = broker.events_queue()
    with running_worker(amqp_url, url_of(database)):
        submitted = client.call(
            "request.submit", submit_body("acct-0"), message_id="s", correlation_id="s"
        ).json()["result"]["request"]
        approved = client.call(
            "request.decide",
            {
                "request_id": submitted["request_id"],
                "actor_id": "acct-0-owner",
                "decision": "approve",
            },
            message_id="d",
            correlation_id="d",
        ).json()["result"]["request"]
        wait_until(lambda: unpublished(database) == 0, timeout=15, what="the relay to catch up")
        expected = outbox_order(database)
        received = broker.collect(events_queue, len(expected))

    events = [assert_event_envelope(m) for m in received]
    assert [e["event_id"] for e in events] == [event_id for event_id, _ in expected]
    types = [e["type"] for e in events]
    assert sorted(types) == sorted(
        [
            "request.submitted",
            "notification.requested",  # to the owner (R16)
            "subscription.changed",
            "request.approved",
            "notification.requested",  # to the requester (R17)
        ]
    )
    assert types.index("request.submitted") < types.index("request.approved")
    by_type = {e["type"]: e for e in events}
    for event in events:
        assert event["account_id"] == "acct-0"
        assert event["request_id"] == submitted["request_id"]
    assert by_type["request.submitted"]["data"] == {"request": submitted}
    assert by_type["request.approved"]["data"] == {"request": approved}
    change = by_type["subscription.changed"]["data"]
    assert change.keys() == {"old", "new", "request_id"}
    assert change["request_id"] == submitted["request_id"]
    assert_subscription(change["old"])
    assert_subscription(change["new"])
    assert change["old"]["products"] == [
        {"product": "support", "plan": "professional", "seats": 10}
    ]
    assert change["new"]["products"] == [
        {"product": "support", "plan": "professional", "seats": 15}
    ]
    notices = [e["data"] for e in events if e["type"] == "notification.requested"]
    assert {n["recipient"]["user_id"] for n in notices} == {"acct-0-owner", "acct-0-admin"}
    for notice in notices:
        assert notice.keys() >= {
            "notification_id",
            "template",
            "locale",
            "recipient",
            "subject",
            "text",
        }
        assert notice["recipient"].keys() >= {"user_id", "email", "name"}


@pytest.mark.postgres
@pytest.mark.slow
def test_two_relay_processes_publish_every_event_exactly_once_in_request_order(
    pg: Database, catalog: Catalog, broker: Broker, spawn_worker: SpawnWorker
) -> None:
    accounts = seed_accounts(pg, catalog, 150)  # no owner: no mail to send
    events_queue = broker.events_queue()
    for name in ("relay-a", "relay-b"):
        spawn_worker(url_of(pg), "--no-consume", name=name)
    wait_until(
        lambda: broker.count_connections("subreq-relay") == 2,
        timeout=20,
        what="both relay processes to connect",
        interval=0.2,
    )

    # Events are committed in rounds while both relays poll, so they compete for them;
    # each round submits for some accounts and cancels the previous round's requests, so
    # every request has two events whose order matters.
    service = CommandService(pg, catalog)
    previous: list[str] = []
    for start in range(0, len(accounts) + ROUND, ROUND):
        items = [
            ("request.submit", orjson.dumps(submit_body(a)), f"sub-{a}")
            for a in accounts[start : start + ROUND]
        ]
        items += [
            ("request.cancel", orjson.dumps({"request_id": r, "actor_id": actor}), f"can-{r}")
            for r, actor in previous
        ]
        replies = [o.json() for o in service.handle_batch(items)]
        assert all(r["ok"] for r in replies), replies
        previous = [
            (r["result"]["request"]["request_id"], r["result"]["request"]["requester_id"])
            for r in replies
            if r["result"]["request"]["state"] == "pending"
        ]
        time.sleep(0.05)  # pacing only; correctness waits below are bounded polls
    assert count(pg, "requests", state="cancelled") == len(accounts)

    received: list[Message] = []

    def everything_arrived() -> bool:
        """Until every outbox row is published and came in (the relays may add events of
        their own, such as notifications sent: compare with the outbox as it is then)."""
        received.extend(broker.drain(events_queue))
        arrived = {m.properties.message_id for m in received}
        return unpublished(pg) == 0 and arrived >= {e for e, _ in outbox_order(pg)}

    wait_until(everything_arrived, timeout=30, what="every outbox event to be published")
    broker.connection.sleep(0.5)  # a duplicate published late would arrive by now
    received.extend(broker.drain(events_queue))
    ids = [m.properties.message_id for m in received]
    duplicates = {i for i in ids if ids.count(i) > 1}
    assert not duplicates, f"{len(duplicates)} events were published twice"
    expected = outbox_order(pg)
    assert set(ids) == {event_id for event_id, _ in expected}
    assert len(ids) >= 2 * len(accounts)
    position = {event_id: n for n, event_id in enumerate(ids)}
    per_request: dict[str | None, list[str]] = {}
    for event_id, request_id in expected:
        per_request.setdefault(request_id, []).append(event_id)
    for request_id, event_ids in per_request.items():
        assert sorted(event_ids, key=position.__getitem__) == event_ids, request_id


def test_two_person_approval_publishes_approval_recorded_then_approved(
    amqp_url: str, database: Database, catalog: Catalog, broker: Broker, client: RawClient
) -> None:
    """R23 over the broker: the first approval's reply is the pending request, its event
    ``request.approval_recorded`` carries the request and ``approver_id``; the second
    approval's ``request.approved`` follows it, with both approvals."""
    seed_accounts(database, catalog, 1, owner=True)
    events_queue = broker.events_queue()
    with running_worker(amqp_url, url_of(database)):
        upsert = {**account("acct-0"), "approval": {"second_above": "100.00"}}
        upserted = client.call("account.upsert", upsert, message_id="u", correlation_id="u").json()
        assert upserted["result"]["approval"] == {"second_above": "100.00", "currency": "USD"}
        billing = member("acct-0-billing", "billing_admin", "acct-0")
        assert client.call("member.upsert", billing, message_id="b", correlation_id="b").json()[
            "ok"
        ]
        submitted = client.call(
            "request.submit", submit_body("acct-0"), message_id="s", correlation_id="s"
        ).json()
        request_id = submitted["result"]["request"]["request_id"]
        decisions = []
        for n, actor in enumerate(("acct-0-owner", "acct-0-owner", "acct-0-billing")):
            body = {"request_id": request_id, "actor_id": actor, "decision": "approve"}
            decisions.append(
                client.call(
                    "request.decide", body, message_id=f"d{n}", correlation_id=f"d{n}"
                ).json()
            )
        wait_until(lambda: unpublished(database) == 0, timeout=15, what="the relay to catch up")
        expected = outbox_order(database)
        received = broker.collect(events_queue, len(expected))

    first, again, second = decisions
    assert first["result"]["request"]["state"] == "pending"
    assert (again["error"]["code"], again["error"]["details"][0]["rule"]) == ("forbidden", "R23")
    assert second["result"]["request"]["state"] == "approved"
    events = [assert_event_envelope(m) for m in received]
    assert [e["event_id"] for e in events] == [event_id for event_id, _ in expected]
    types = [e["type"] for e in events if e["request_id"] == request_id]
    assert [t for t in types if t != "notification.requested"] == [
        "request.submitted",
        "request.approval_recorded",
        "subscription.changed",
        "request.approved",
    ]
    by_type = {e["type"]: e for e in events}
    recorded = by_type["request.approval_recorded"]
    assert recorded["data"] == {
        "request": first["result"]["request"],
        "approver_id": "acct-0-owner",
    }
    assert [a["actor_id"] for a in recorded["data"]["request"]["approvals"]] == ["acct-0-owner"]
    approved = by_type["request.approved"]["data"]["request"]
    assert [a["actor_id"] for a in approved["approvals"]] == ["acct-0-owner", "acct-0-billing"]
    asked = [
        e["data"]
        for e in events
        if e["type"] == "notification.requested"
        and e["data"]["template"] == "request_approval_recorded"
    ]
    assert [n["recipient"]["user_id"] for n in asked] == ["acct-0-billing"]
