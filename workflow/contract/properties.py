"""The AMQP basic properties of each message of the contract, stated once.

AMQP 0-9-1 carries ``content_type``, ``message_id``, ``correlation_id``, ``reply_to``,
``type``, ``timestamp`` and ``delivery_mode`` as basic properties of a message, apart from
its headers table. An AsyncAPI message's ``headers`` is that table (code generators write
it there, where subreq does not look), so the properties are listed here and rendered into
each message's description; where AsyncAPI has a field for one (``contentType``,
``correlationId``, the AMQP bindings' ``messageType``, ``deliveryMode``, ``timestamp``)
the document sets it as well.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Property:
    """One AMQP basic property of a message and what it holds."""

    name: str
    value: str


CONTENT_TYPE = Property("content_type", "`application/json`: the body is a UTF-8 JSON object.")

COMMAND = (
    Property(
        "content_type",
        "`application/json`: the body is a UTF-8 JSON object (a leading byte-order mark "
        "is ignored).",
    ),
    Property(
        "message_id",
        "Optional, recommended: the idempotency key. The same key processed twice has one "
        "effect and the stored reply is sent again (keys are kept at least 7 days). Without "
        "it, `request.submit`, `request.decide` and `request.cancel` are deduplicated by a "
        "SHA-256 of routing key and body within `SUBREQ_DEDUPE_WINDOW`.",
    ),
    Property(
        "reply_to",
        "Optional: the queue to answer (via the default exchange), e.g. "
        "`amq.rabbitmq.reply-to`. Without it, no reply is sent.",
    ),
    Property(
        "correlation_id",
        "Optional: copied to the reply. Without it the reply carries the `message_id`; "
        "without either, the reply has no `correlation_id`.",
    ),
    Property("delivery_mode", "`2` (persistent) recommended."),
)

REPLY = (
    CONTENT_TYPE,
    Property(
        "correlation_id",
        "The command's `correlation_id`, else its `message_id`; absent when the command "
        "had neither (a client that matches replies sets one). A reply sent again for a "
        "duplicate command carries the `correlation_id` of the delivery it answers.",
    ),
    Property("type", "The command's routing key followed by `.reply`."),
    Property("timestamp", "When the command was answered, in seconds since the epoch."),
)

EVENT = (
    CONTENT_TYPE,
    Property("message_id", "The `event_id` of the body: dedupe on it (redelivery happens)."),
    Property("type", "The event type, as the routing key and the body's `type`."),
    Property("timestamp", "The event's `occurred_at`, in seconds since the epoch."),
    Property("delivery_mode", "`2` (persistent)."),
)

DEAD_LETTER = (
    Property(
        "message_id, correlation_id, reply_to, content_type, timestamp, type, ...",
        "The command's own properties, unchanged (a replay republishes them).",
    ),
    Property("delivery_mode", "`2` (persistent)."),
)


def table(properties: Sequence[Property]) -> str:
    """The properties as a Markdown table, for a message's description."""
    rows = [f"| `{p.name}` | {p.value} |" for p in properties]
    return "\n".join(["| AMQP property | value |", "|---|---|", *rows])
