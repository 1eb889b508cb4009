"""Reading and replaying ``subreq.commands.dead`` for operators (``subreq dlq``).

Reading leaves every dead letter where it is. ``basic_get`` followed by a requeue would
hand the same message back at once, so instead the queue is consumed with manual acks,
every message is held unacknowledged while read, and all are requeued together at the
end. The dead-letter queue is a classic queue, where a requeued message returns to its
original position, so the order is kept; the cost is the ``redelivered`` flag, which
nothing reads on this queue, and that the messages are invisible to other readers for
the second or so the read takes. Held messages ride on the connection: if it drops, the
broker requeues them itself, so an interrupted read loses nothing.

Replaying republishes a dead letter to ``subreq.commands`` under its original routing key
with its original properties (``message_id`` included, so a command that did commit
before it was dead-lettered is answered from its idempotency record, not run twice) and
acknowledges it only after the broker confirmed the republished copy.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from consumers.amqp.deadqueue import dead_queue
from consumers.amqp.publishing import Properties, copy_properties
from workflow.contract.names import (
    DELIVERY_COUNT_HEADER,
    ERROR_HEADER,
    REPLAYS_HEADER,
    ROUTING_KEY_HEADER,
)

DROPPED_HEADERS = frozenset(
    {
        ERROR_HEADER,
        ROUTING_KEY_HEADER,
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        DELIVERY_COUNT_HEADER,
    }
)
"""Headers that describe the death, not the command: a replay starts without them."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered command, as it sits in the queue."""

    routing_key: str
    properties: Properties
    body: bytes

    @classmethod
    def of(cls, delivered: str, properties: Properties, body: bytes) -> DeadLetter:
        """The dead letter as read, under its command's own routing key."""
        return cls(original_routing_key(delivered, properties), properties, body)

    @property
    def headers(self) -> dict[str, Any]:
        return dict(self.properties.headers or {})

    @property
    def message_id(self) -> str | None:
        return self.properties.message_id  # type: ignore[no-any-return]

    @property
    def error(self) -> str | None:
        return _text(self.headers.get(ERROR_HEADER))

    @property
    def death(self) -> dict[str, Any] | None:
        """The broker's last ``x-death`` entry (delivery limit, rejection), if it sent it here."""
        deaths = self.headers.get("x-death")
        if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], dict):
            return None
        entry = deaths[0]
        return {
            "reason": _text(entry.get("reason")),
            "queue": _text(entry.get("queue")),
            "count": entry.get("count"),
            "time": entry.get("time") if isinstance(entry.get("time"), datetime) else None,
        }

    @property
    def fingerprint(self) -> tuple[str | None, str, str]:
        """What identifies a dead letter across two reads: id, routing key, body hash."""
        return self.message_id, self.routing_key, hashlib.sha256(self.body).hexdigest()

    def preview(self, width: int = 120) -> str:
        text = self.body.decode("utf-8", "replace").replace("\n", " ")
        return text if len(text) <= width else text[: width - 3] + "..."

    def as_dict(self) -> dict[str, Any]:
        props = self.properties
        return {
            "routing_key": self.routing_key,
            "message_id": self.message_id,
            "correlation_id": props.correlation_id,
            "reply_to": props.reply_to,
            "error": self.error,
            "death": self.death,
            "replays": self.headers.get(REPLAYS_HEADER, 0),
            "body_bytes": len(self.body),
            "body": self.body.decode("utf-8", "replace"),
        }


def describe(letter: DeadLetter) -> str:
    """A few aligned lines per dead letter for ``subreq dlq list``: what, which, why."""
    lines = [f"{letter.routing_key}  message_id {letter.message_id or '-'}"]
    if letter.error:
        lines.append(f"  error:  {letter.error}")
    death = letter.death
    if death is not None:
        lines.append(f"  death:  {death['reason']} in {death['queue']} ({death['count']}x)")
    replays = letter.headers.get(REPLAYS_HEADER)
    if replays:
        lines.append(f"  replays: {replays}")
    lines.append(f"  body:   {letter.preview()} ({len(letter.body)} bytes)")
    return "\n".join(lines)


def original_routing_key(delivered: str, properties: Properties) -> str:
    """The command's own routing key, wherever the dead letter came from.

    The consumer's copies carry it in ``x-subreq-routing-key``; the broker's own dead
    letters (delivery limit) keep it as their routing key and in ``x-death``.
    """
    headers = properties.headers or {}
    named = _text(headers.get(ROUTING_KEY_HEADER))
    if named:
        return named
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        keys = deaths[0].get("routing-keys")
        if isinstance(keys, list) and keys:
            return _text(keys[0]) or delivered
    return delivered


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def replay_properties(letter: DeadLetter) -> Properties:
    """The original properties, without the death's headers, persistent, one replay more.

    ``user_id`` is dropped because the broker checks it against the replaying user, and
    ``expiration`` because a dead letter waited past any sensible TTL.
    """
    headers = {k: v for k, v in letter.headers.items() if k not in DROPPED_HEADERS}
    previous = headers.get(REPLAYS_HEADER, 0)
    headers[REPLAYS_HEADER] = (previous if isinstance(previous, int) else 0) + 1
    return copy_properties(letter.properties, headers)


def peek(url: str, limit: int | None = None) -> list[DeadLetter]:
    """The dead letters in queue order (at most ``limit``), all left in the queue."""
    with dead_queue(url) as queue, closing(queue.held(limit)) as held:
        return [DeadLetter.of(key, properties, body) for _, key, properties, body in held]


@dataclass(frozen=True)
class Replayed:
    replayed: list[DeadLetter]
    failure: str | None = None
    """Why the replay stopped early; the dead letter it was at stays in the queue."""


def replay(url: str, select: Callable[[DeadLetter], bool]) -> Replayed:
    """Republish every dead letter ``select`` accepts, each acknowledged after its confirm."""
    done: list[DeadLetter] = []
    with dead_queue(url) as queue, closing(queue.held(None)) as held:
        queue.confirm()
        for tag, key, properties, body in held:
            letter = DeadLetter.of(key, properties, body)
            if not select(letter):
                continue
            failure = queue.republish(letter.routing_key, letter.body, replay_properties(letter))
            if failure is not None:
                return Replayed(done, failure)
            queue.ack(tag)
            done.append(letter)
    return Replayed(done)


def matching(letters: Iterable[DeadLetter]) -> Callable[[DeadLetter], bool]:
    """Accepts exactly the given dead letters (by fingerprint), each once: what an
    operator was shown and confirmed, not what arrived since."""
    remaining = Counter(letter.fingerprint for letter in letters)

    def select(letter: DeadLetter) -> bool:
        if remaining[letter.fingerprint] > 0:
            remaining[letter.fingerprint] -= 1
            return True
        return False

    return select
