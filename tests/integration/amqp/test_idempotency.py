"""Idempotency on the wire: message_id duplicates, and body-hash dedupe without one."""

from __future__ import annotations

import orjson

from tests.integration.amqp.support import (
    SEATS,
    RawClient,
    count,
    processed_keys,
    running_worker,
    url_of,
)
from tests.integration.helpers import account, member
from workflow.persistence.database import Database


def seed_over_the_wire(client: RawClient) -> None:
    for n, (key, body) in enumerate(
        [
            ("account.upsert", account("acme")),
            ("member.upsert", member("acme-owner", "owner")),
            ("member.upsert", member("acme-admin", "admin")),
        ]
    ):
        reply = client.call(key, body, message_id=f"seed-{n}", correlation_id=f"seed-{n}")
        assert reply.json()["ok"], reply.json()


def test_plain_client_without_message_id_or_correlation_id_still_gets_replies(
    amqp_url: str, database: Database, client: RawClient
) -> None:
    """Only reply_to is set: the reply comes (with no correlation id to carry), and a
    submit published twice with the same body is deduplicated by its body hash."""
    with running_worker(amqp_url, url_of(database), relay=False):
        client.publish("account.upsert", account("acme"))
        client.publish("member.upsert", member("acme-admin", "admin"))
        first, second = client.wait_replies(2)
        assert first.correlation_id is None
        assert first.json()["ok"], first.json()
        assert first.json()["result"]["account_id"] == "acme"
        assert second.json()["ok"], second.json()
        client.replies.clear()

        body = orjson.dumps({"account_id": "acme", "actor_id": "acme-admin", "changes": SEATS})
        client.publish("request.submit", body)
        client.publish("request.submit", body)  # a publisher retry: same bytes, no id
        client.wait_replies(2)
        client.publish("request.submit", body)  # and once more, in a later batch
        replies = client.wait_replies(3)

    assert replies[0].json()["ok"], replies[0].json()
    assert replies[0].json()["result"]["request"]["state"] == "pending"
    assert [r.body for r in replies] == [replies[0].body] * 3
    assert count(database, "requests") == 1
    assert count(database, "audit_log") == 0, "a duplicate was refused instead of deduplicated"
    assert [k.split(":")[0] for k in processed_keys(database)] == ["sha256"]


def test_same_message_id_twice_has_one_effect_and_both_deliveries_get_the_original_reply(
    amqp_url: str, database: Database, client: RawClient
) -> None:
    with running_worker(amqp_url, url_of(database), relay=False):
        seed_over_the_wire(client)

        # One after the other: the second is answered from the stored reply.
        submit = {"account_id": "acme", "actor_id": "acme-admin", "changes": SEATS}
        original = client.call("request.submit", submit, message_id="sub-1", correlation_id="a")
        effects = (count(database, "requests"), count(database, "outbox"))
        again = client.call("request.submit", submit, message_id="sub-1", correlation_id="b")
        assert again.correlation_id == "b"
        assert again.body == original.body
        assert (count(database, "requests"), count(database, "outbox")) == effects
        request_id = original.json()["result"]["request"]["request_id"]

        # Back to back (most likely the same batch): still one approval.
        decide = {"request_id": request_id, "actor_id": "acme-owner", "decision": "approve"}
        client.publish("request.decide", decide, message_id="dec-1", correlation_id="c")
        client.publish("request.decide", decide, message_id="dec-1", correlation_id="d")
        c, d = client.reply_to("c"), client.reply_to("d")
        assert c.body == d.body
        assert c.json()["result"]["request"]["state"] == "approved"

        # An upsert replayed says what the first one said ("created"), not "updated".
        upsert = account("newco")
        first = client.call("account.upsert", upsert, message_id="up-1", correlation_id="e")
        second = client.call("account.upsert", upsert, message_id="up-1", correlation_id="f")
        assert first.json()["result"]["created"] is True
        assert second.body == first.body

    assert count(database, "requests") == 1
    assert count(database, "outbox", type="subscription.changed") == 1
    assert count(database, "outbox", type="request.approved") == 1
    assert count(database, "request_transitions", to_state="approved") == 1
    assert count(database, "audit_log") == 0
    assert sorted(k for k in processed_keys(database) if not k.startswith("id:seed")) == [
        "id:dec-1",
        "id:sub-1",
        "id:up-1",
    ]
    for correlation_id in "abcdef":
        assert len(client.replies_to(correlation_id)) == 1, correlation_id
