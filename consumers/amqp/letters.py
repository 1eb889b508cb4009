"""Dead-letter copies of notifications given up, published on a short-lived confirming
channel: they are rare, and the notifier otherwise needs no broker connection."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import pika

from consumers.amqp.connection import connect
from consumers.amqp.publishing import bury
from consumers.amqp.topology import declare_notification_dead_letters
from workflow.contract.names import NOTIFICATION_REQUESTED, NOTIFICATIONS_DEAD_QUEUE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Letter:
    """One notification given up: its id, the event it was, and why."""

    notification_id: str
    event_id: str | None
    body: bytes
    reason: str


def dead_letter(url: str, letters: Sequence[Letter]) -> list[str]:
    """Copy ``letters`` into ``subreq.notifications.dead``; the ids the broker confirmed, in
    order (all of them unless the broker went away midway: raises only before the first)."""
    confirmed: list[str] = []
    connection = connect(url, name="subreq-notifier", timeout=5.0)
    try:
        channel = connection.channel()
        declare_notification_dead_letters(channel)
        channel.confirm_delivery()
        for letter in letters:
            props = pika.BasicProperties(
                content_type="application/json",
                message_id=letter.event_id,
                type=NOTIFICATION_REQUESTED,
            )
            try:
                bury(channel, NOTIFICATIONS_DEAD_QUEUE, letter.body, props, letter.reason)
            except Exception as exc:
                log.warning("dead-lettering %s failed: %s", letter.notification_id, exc)
                break
            confirmed.append(letter.notification_id)
    finally:
        if connection.is_open:
            connection.close()
    return confirmed
