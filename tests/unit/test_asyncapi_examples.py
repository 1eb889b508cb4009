"""Every reply, event and dead-letter example of docs/asyncapi.yaml is what subreq produced.

Each story below runs the command examples through the real CommandService on SQLite
(a fresh database, the clock at the examples' times), and the sweeper, the notifier's
delivery record and the consumer's dead-lettering where an example needs them. What came
out must equal the documented example once the ids the service generated (request,
event and notification ids) are replaced by the example's: same shape, same values.
The AMQP properties replies and events are published with are the documented ones.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pika
import pytest

from consumers.amqp.deliveries import Bury, Delivery, apply
from consumers.amqp.publishing import publish_events
from consumers.consumer import settle_batch
from consumers.mail import message_id
from policies.timers import Timers
from tests.integration.helpers import events, member
from tests.unit.amqp_fakes import Replies
from workflow.app.outbox import relay_batch
from workflow.app.service import CommandService
from workflow.contract import examples, properties
from workflow.contract.names import (
    DEAD_QUEUE,
    EVENTS_EXCHANGE,
    REPLY_SUFFIX,
    REPLY_TO,
    ROUTING_KEY_HEADER,
)
from workflow.domain.catalog import load_catalog
from workflow.notifications import deliveries
from workflow.notifications.mailconfig import parse_mail_from
from workflow.ops.deadlines import Sweeper
from workflow.persistence.database import Database
from workflow.persistence.migrate import upgrade
from workflow.settings import Settings

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
COMMANDS = examples.COMMAND_EXAMPLES


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class Story:
    """One fresh database: the example account, its admin, owner and agent, at ``AT``."""

    def __init__(self, path: Path) -> None:
        self.now = _at(examples.AT)
        self.db = Database(f"sqlite:///{path}")
        upgrade(self.db)
        self.service = CommandService(self.db, load_catalog(), clock=lambda: self.now)
        self.replies: dict[str, dict[str, Any]] = {}
        self.send("account.upsert", COMMANDS["account.upsert"])
        self.send("member.upsert", COMMANDS["member.upsert"])
        self.send("member.upsert", member("acme-owner", "owner"))
        self.send("member.upsert", member("acme-agent", "agent"))

    def send(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        reply: dict[str, Any] = self.service.handle(key, orjson.dumps(body)).json()
        self.replies.setdefault(key, reply)
        return reply

    def submit(self) -> str:
        reply = self.send("request.submit", COMMANDS["request.submit"])
        assert reply["ok"], reply
        request_id: str = reply["result"]["request"]["request_id"]
        self.now = _at(examples.DECIDED_AT)
        return request_id

    def with_id(self, key: str, request_id: str, **changes: Any) -> dict[str, Any]:
        return self.send(key, {**COMMANDS[key], "request_id": request_id, **changes})

    def events(self) -> dict[str, dict[str, Any]]:
        """The first event of each type this story published."""
        found: dict[str, dict[str, Any]] = {}
        for event in events(self.db):
            found.setdefault(event["type"], event)
        return found


@pytest.fixture
def story(tmp_path: Path) -> Iterator[Callable[[], Story]]:
    made: list[Story] = []

    def make() -> Story:
        made.append(Story(tmp_path / f"story-{len(made)}.db"))
        return made[-1]

    yield make
    for each in made:
        each.db.dispose()


class Channel:
    """Records what subreq publishes on it, as the broker would receive it."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes, pika.BasicProperties]] = []
        self._impl = self

    def basic_publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        properties: pika.BasicProperties,
        mandatory: bool = False,
    ) -> None:
        self.published.append((exchange, routing_key, body, properties))

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        pass

    def tx_commit(self) -> None:
        pass


def same_but_ids(real: Any, documented: Any) -> Any:
    """``real`` with each id it generated replaced by the documented one in the same place
    (and everywhere else that id appears, texts included)."""
    mapping: dict[str, str] = {}

    def pair(r: Any, d: Any) -> None:
        if isinstance(r, dict) and isinstance(d, dict):
            for key in r.keys() & d.keys():
                pair(r[key], d[key])
        elif isinstance(r, list) and isinstance(d, list):
            for a, b in zip(r, d, strict=False):
                pair(a, b)
        elif isinstance(r, str) and isinstance(d, str):
            for a, b in zip(UUID.findall(r), UUID.findall(d), strict=False):
                mapping.setdefault(a, b)

    pair(real, documented)
    text = orjson.dumps(real).decode()
    for generated, shown in mapping.items():
        text = text.replace(generated, shown)
    return orjson.loads(text)


def assert_documented(real: Any, documented: Any, what: str) -> None:
    assert same_but_ids(real, documented) == documented, f"{what}: the example is not true"


def test_every_reply_example_is_what_the_service_answered(story: Callable[[], Story]) -> None:
    first = story()
    first.send("member.remove", COMMANDS["member.remove"])
    first.send("request.preview", COMMANDS["request.preview"])
    forbidden = first.send(
        "request.submit", {**COMMANDS["request.submit"], "actor_id": "acme-owner"}
    )
    first.replies.pop("request.submit")
    request_id = first.submit()
    first.send("catalog.get", COMMANDS["catalog.get"])
    first.with_id("request.get", request_id)
    first.send("request.list", COMMANDS["request.list"])
    invalid = first.with_id("request.decide", request_id, decision="reject", comment=None)
    first.replies.pop("request.decide")
    first.with_id("request.decide", request_id)
    cancelled = story()
    cancelled.with_id("request.cancel", cancelled.submit())

    replies = {**first.replies, **cancelled.replies}
    assert set(replies) == set(examples.REPLY_EXAMPLES)
    for key, documented in examples.REPLY_EXAMPLES.items():
        assert_documented(replies[key], documented, f"{key} reply")
    assert_documented(forbidden, examples.ERROR_EXAMPLES["forbidden"], "forbidden reply")
    assert_documented(invalid, examples.ERROR_EXAMPLES["invalid_message"], "invalid reply")


def test_every_event_example_is_what_the_service_published(story: Callable[[], Story]) -> None:
    published: dict[str, dict[str, Any]] = {}

    approved = story()
    approved.with_id("request.decide", approved.submit())
    published |= approved.events()

    rejected = story()
    rejected.with_id("request.decide", rejected.submit(), **examples.REJECTION)
    published.setdefault("request.rejected", rejected.events()["request.rejected"])

    cancelled = story()
    cancelled.with_id("request.cancel", cancelled.submit())
    published.setdefault("request.cancelled", cancelled.events()["request.cancelled"])

    expired = story()
    expired.submit()
    expired.now = _at(examples.EXPIRED_AT)
    ttl = timedelta(days=30)
    timers = Timers(ttl=ttl, reminder_after=ttl)
    Sweeper(expired.db, load_catalog(), timers=timers, clock=lambda: expired.now).expire_due()
    published.setdefault("request.expired", expired.events()["request.expired"])

    two = story()
    two.send("account.upsert", {**COMMANDS["account.upsert"], **examples.TWO_PERSON_UPSERT})
    two.with_id("request.decide", two.submit())
    published.setdefault("request.approval_recorded", two.events()["request.approval_recorded"])
    voided = story()
    voided.submit()
    voided.send("account.upsert", {**COMMANDS["account.upsert"], **examples.VOIDING_UPSERT})
    published.setdefault("request.voided", voided.events()["request.voided"])

    wanted = published["notification.requested"]["data"]["notification_id"]
    sent_at = _at(examples.SENT_AT)
    lease = timedelta(minutes=5)
    claims = deliveries.exchange(approved.db, [], sent_at, want=100, lease=lease).claimed
    [claim] = [c for c in claims if c.notice.notification_id == wanted]
    sender = parse_mail_from(Settings.model_fields["mail_from"].default)
    mail_id = message_id(claim.notice.notification_id, sender)
    sent = deliveries.Outcome(claim, "sent", sent_at, message_id=mail_id)
    assert deliveries.exchange(approved.db, [sent], sent_at, want=0, lease=lease).recorded
    published["notification.sent"] = approved.events()["notification.sent"]

    assert set(published) == set(examples.EVENT_EXAMPLES)
    for type_, documented in examples.EVENT_EXAMPLES.items():
        assert_documented(published[type_], documented, f"{type_} event")


def test_the_dead_letter_example_is_what_the_consumer_buried(story: Callable[[], Story]) -> None:
    documented = examples.DEAD_LETTER_EXAMPLE
    key = documented["headers"][ROUTING_KEY_HEADER]
    body = orjson.dumps(documented["payload"])
    properties = pika.BasicProperties(
        content_type="application/json", message_id=f"{key}-1", reply_to=REPLY_TO
    )
    delivery = Delivery(1, key, properties, body)
    outcome = story().service.handle(key, body, properties.message_id)
    actions = settle_batch([delivery], [outcome], max_deliveries=5)
    assert any(isinstance(action, Bury) for action in actions)

    channel, dead = Channel(), Channel()
    apply(actions, Replies(channel), dead)  # type: ignore[arg-type]
    [(_, queue, buried, kept)] = dead.published
    assert queue == DEAD_QUEUE
    assert orjson.loads(buried) == documented["payload"]
    assert kept.headers == documented["headers"]
    assert (kept.message_id, kept.reply_to) == (properties.message_id, properties.reply_to)


def _set(props: pika.BasicProperties) -> dict[str, Any]:
    return {name: value for name, value in vars(props).items() if value is not None}


def _documented(amqp: tuple[properties.Property, ...]) -> set[str]:
    return {p.name for p in amqp}


@pytest.mark.parametrize(
    ("message_id", "correlation_id", "expected"),
    [("m-1", "c-1", "c-1"), ("m-1", None, "m-1"), (None, None, None)],
)
def test_a_reply_carries_the_documented_properties(
    story: Callable[[], Story],
    message_id: str | None,
    correlation_id: str | None,
    expected: str | None,
) -> None:
    """correlation_id: the command's, else its message_id, else none at all."""
    key = "catalog.get"
    sent = pika.BasicProperties(
        content_type="application/json",
        message_id=message_id,
        correlation_id=correlation_id,
        reply_to=REPLY_TO,
    )
    delivery = Delivery(1, key, sent, b"{}")
    outcome = story().service.handle(key, b"{}", message_id)
    channel, dead = Channel(), Channel()
    apply(settle_batch([delivery], [outcome], max_deliveries=5), Replies(channel), dead)  # type: ignore[arg-type]
    [(exchange, routing_key, _, reply)] = channel.published
    assert (exchange, routing_key) == ("", REPLY_TO)
    assert set(_set(reply)) <= _documented(properties.REPLY)
    assert reply.correlation_id == expected
    assert (reply.content_type, reply.type) == ("application/json", key + REPLY_SUFFIX)
    absent = {"correlation_id"} if expected is None else set()
    assert set(_set(reply)) == _documented(properties.REPLY) - absent
    assert abs(reply.timestamp - time.time()) < 60


def test_an_event_carries_the_documented_properties(story: Callable[[], Story]) -> None:
    published = story()
    published.submit()
    channel = Channel()
    replies = Replies(channel)
    assert relay_batch(published.db, lambda batch: publish_events(replies, batch))  # type: ignore[arg-type]
    assert channel.published
    for exchange, routing_key, body, props in channel.published:
        event = orjson.loads(body)
        assert (exchange, routing_key) == (EVENTS_EXCHANGE, event["type"])
        assert set(_set(props)) <= _documented(properties.EVENT)
        assert (props.message_id, props.type) == (event["event_id"], event["type"])
        assert (props.content_type, props.delivery_mode) == ("application/json", 2)
        assert set(_set(props)) == _documented(properties.EVENT)
        assert props.timestamp == int(_at(event["occurred_at"]).timestamp())
