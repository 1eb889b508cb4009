"""How the command consumer settles deliveries, decided and applied
without a broker: the decisions are values, and a fake channel records the calls."""

from __future__ import annotations

from typing import Any, cast

import pytest
from pika.spec import BasicProperties

from consumers.amqp.deliveries import Ack, Action, Bury, Delivery, Reply, Requeue, apply
from consumers.consumer import Failed, settle_batch
from tests.unit.amqp_fakes import Replies
from workflow.app.service import Outcome
from workflow.contract.names import (
    DEAD_QUEUE,
    DELIVERY_COUNT_HEADER,
    ERROR_HEADER,
    ROUTING_KEY_HEADER,
)

ROUTED = ((ROUTING_KEY_HEADER, "request.submit"),)


def delivery(
    tag: int,
    *,
    reply_to: str | None = "replies",
    correlation_id: str | None = None,
    count: int | None = None,
) -> Delivery:
    headers = {DELIVERY_COUNT_HEADER: count} if count is not None else None
    props = BasicProperties(
        message_id=f"m-{tag}", correlation_id=correlation_id, reply_to=reply_to, headers=headers
    )
    return Delivery(tag, "request.submit", props, f"body-{tag}".encode())


class Recorder:
    """Both channels write here, so the order across them shows."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []


class FakeChannel:
    def __init__(self, name: str, recorder: Recorder) -> None:
        self.name, self.recorder = name, recorder
        self._impl = self  # publish_queued writes through the channel under a BlockingChannel

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.recorder.calls.append((self.name, "ack", tag, multiple))

    def basic_nack(self, tag: int, requeue: bool = True) -> None:
        self.recorder.calls.append((self.name, "nack", tag, requeue))

    def basic_publish(self, exchange: str, routing_key: str, body: bytes, properties: Any,
                      mandatory: bool = False) -> None:  # fmt: skip
        self.recorder.calls.append(
            (self.name, "publish", exchange, routing_key, body, properties, mandatory)
        )


def applied(actions: list[Action], *, waits: bool = False) -> list[tuple[Any, ...]]:
    """The channel calls of ``actions``, in order; with ``waits``, each wait for the
    replies' confirms among them."""
    recorder = Recorder()
    channel, dead = FakeChannel("channel", recorder), FakeChannel("dead", recorder)
    replies = Replies(channel, recorder.calls if waits else [])
    apply(actions, cast(Any, replies), cast(Any, dead))
    return recorder.calls


# --- the command consumer ------------------------------------------------------------------


def test_a_handled_batch_replies_to_each_then_acks_all_at_once() -> None:
    batch = [delivery(1, correlation_id="c-1"), delivery(2, correlation_id="c-2")]
    outcomes = [Outcome(b'{"ok":true}'), Outcome(b'{"ok":false}', error_code="forbidden")]
    assert settle_batch(batch, outcomes, max_deliveries=5) == [
        Reply("replies", b'{"ok":true}', "c-1", "request.submit.reply"),
        Reply("replies", b'{"ok":false}', "c-2", "request.submit.reply"),
        Ack(2, multiple=True),
    ]


def test_an_invalid_command_is_buried_then_answered_then_acked() -> None:
    batch = [delivery(7, correlation_id="c-7")]
    outcome = Outcome(b'{"ok":false}', invalid=True, error_reason="not JSON")
    actions = settle_batch(batch, [outcome], max_deliveries=5)
    assert actions == [
        Bury(DEAD_QUEUE, batch[0], "not JSON", ROUTED),
        Reply("replies", b'{"ok":false}', "c-7", "request.submit.reply"),
        Ack(7, multiple=True),
    ]
    calls = applied(actions)
    assert [call[:2] for call in calls] == [
        ("dead", "publish"),
        ("channel", "publish"),
        ("channel", "ack"),
    ]
    _, _, exchange, queue, body, props, mandatory = calls[0]
    assert (exchange, queue, body, mandatory) == ("", DEAD_QUEUE, b"body-7", True)
    assert props.headers == {ERROR_HEADER: "not JSON", ROUTING_KEY_HEADER: "request.submit"}
    assert props.message_id == "m-7"
    _, _, exchange, to, body, props, _ = calls[1]
    assert (exchange, to, body) == ("", "replies", b'{"ok":false}')
    assert (props.correlation_id, props.type) == ("c-7", "request.submit.reply")
    assert calls[2] == ("channel", "ack", 7, True)


def test_acks_wait_for_the_confirms_of_the_replies_before_them() -> None:
    """On a cluster the reply queue and the command queue may be led by different nodes:
    an ack must never reach the broker before the replies it follows were confirmed."""
    batch = [delivery(1, correlation_id="c-1"), delivery(2, correlation_id="c-2")]
    actions = settle_batch(batch, [Outcome(b"{}"), Outcome(b"{}")], max_deliveries=5)
    assert [call[:2] for call in applied(actions, waits=True)] == [
        ("channel", "publish"),
        ("channel", "publish"),
        ("replies", "wait"),
        ("channel", "ack"),
    ]
    assert [call[:2] for call in applied([Requeue(1)], waits=True)] == [
        ("replies", "wait"),
        ("channel", "nack"),
    ]


def test_an_invalid_command_without_a_reason_is_still_buried_with_one() -> None:
    item = delivery(1)
    actions = settle_batch([item], [Outcome(b"", invalid=True)], max_deliveries=5)
    assert actions == [Bury(DEAD_QUEUE, item, "invalid message", ROUTED), Ack(1, multiple=True)]


def test_no_reply_without_reply_to_or_without_a_body() -> None:
    batch = [delivery(1, reply_to=None), delivery(2)]
    outcomes = [Outcome(b'{"ok":true}'), Outcome(b"")]
    assert settle_batch(batch, outcomes, max_deliveries=5) == [Ack(2, multiple=True)]


def test_the_correlation_id_falls_back_to_the_message_id() -> None:
    (reply, _) = settle_batch([delivery(3)], [Outcome(b"{}")], max_deliveries=5)
    assert reply == Reply("replies", b"{}", "m-3", "request.submit.reply")


def test_a_failed_batch_is_requeued_below_the_limit_and_buried_at_it() -> None:
    below, at, above = delivery(1, count=3), delivery(2, count=4), delivery(3, count=9)
    fresh = delivery(4)  # no x-delivery-count yet: its first delivery
    actions = settle_batch([below, at, above, fresh], Failed("database down"), max_deliveries=5)
    assert actions == [
        Requeue(1),
        Bury(DEAD_QUEUE, at, "gave up after 5 deliveries: database down", ROUTED),
        Ack(2),
        Bury(DEAD_QUEUE, above, "gave up after 10 deliveries: database down", ROUTED),
        Ack(3),
        Requeue(4),
    ]
    assert [call[:3] for call in applied(actions)] == [
        ("channel", "nack", 1),
        ("dead", "publish", ""),
        ("channel", "ack", 2),
        ("dead", "publish", ""),
        ("channel", "ack", 3),
        ("channel", "nack", 4),
    ]
    assert applied([Requeue(1)]) == [("channel", "nack", 1, True)]


def test_a_batch_and_its_outcomes_must_match() -> None:
    with pytest.raises(ValueError, match="zip"):
        settle_batch([delivery(1), delivery(2)], [Outcome(b"{}")], max_deliveries=5)
