"""Every reply, event and dead-letter example of docs/asyncapi.yaml is what subreq produced.

Each story below runs the command examples through the real CommandService on SQLite
(a fresh database, the clock at the examples' times), and the sweeper, the notifier's
delivery record and the consumer's dead-lettering where an example needs them. What came
out must equal the documented example once the ids the service generated (request,
event and notification ids) are replaced by the example's: same shape, same values.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pika
import pytest

from consumers.amqp.deliveries import Bury, Delivery, apply
from consumers.consumer import settle_batch
from consumers.mail import message_id
from tests.integration.helpers import events, member
from workflow.app.service import CommandService
from workflow.contract import examples
from workflow.contract.names import DEAD_QUEUE, REPLY_TO, ROUTING_KEY_HEADER
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
    Sweeper(
        expired.db, load_catalog(), ttl=ttl, reminder_after=ttl, clock=lambda: expired.now
    ).expire_due()
    published.setdefault("request.expired", expired.events()["request.expired"])

    voided = story()
    voided.submit()
    voided.send("account.upsert", {**COMMANDS["account.upsert"], **examples.VOIDING_UPSERT})
    published.setdefault("request.voided", voided.events()["request.voided"])

    notice = deliveries.parse_notice(orjson.dumps(published["notification.requested"]))
    sent_at = _at(examples.SENT_AT)
    claim = deliveries.claim(approved.db, notice, sent_at, timedelta(minutes=5))
    assert claim.token is not None
    sender = parse_mail_from(Settings.model_fields["mail_from"].default)
    mail_id = message_id(notice.notification_id, sender)
    assert deliveries.mark_sent(approved.db, notice, claim.token, sent_at, mail_id)
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

    class Channel:
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

    channel, dead = Channel(), Channel()
    apply(actions, channel, dead)  # type: ignore[arg-type]
    [(_, queue, buried, kept)] = dead.published
    assert queue == DEAD_QUEUE
    assert orjson.loads(buried) == documented["payload"]
    assert kept.headers == documented["headers"]
    assert (kept.message_id, kept.reply_to) == (properties.message_id, properties.reply_to)
