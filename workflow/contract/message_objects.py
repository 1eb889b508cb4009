"""The AsyncAPI message objects: every command, its reply, every event, the dead letter.

Payloads point at the schemas generated from the models; AMQP properties are stated in
each description (``workflow.contract.properties``) and, where AsyncAPI has a field for
one, there (``contentType``, ``correlationId``, the bindings' ``messageType``); only the
dead letter has real headers.
"""

from __future__ import annotations

from typing import Any

from workflow.contract import properties
from workflow.contract.bindings import message_binding
from workflow.contract.envelopes import EVENTS, REPLIES
from workflow.contract.examples import (
    COMMAND_EXAMPLES,
    DEAD_LETTER_EXAMPLE,
    ERROR_EXAMPLES,
    EVENT_EXAMPLES,
    REPLY_EXAMPLES,
)
from workflow.contract.messages import COMMANDS
from workflow.contract.names import (
    ERROR_HEADER,
    EVENT_TYPES,
    REPLY_SUFFIX,
    ROUTING_KEY_HEADER,
)
from workflow.contract.summaries import COMMAND_SUMMARIES, EVENT_SUMMARIES

SCHEMAS = "#/components/schemas/"
CORRELATION_IDS = "#/components/correlationIds/"
JSON = "application/json"

CORRELATION_ID_LOCATION = "$message.header#/correlation_id"
"""AsyncAPI's runtime expressions reach only ``$message.header`` and ``$message.payload``;
this one names the AMQP ``correlation_id`` property, which is not in the headers table."""

NOT_A_HEADER = (
    "It is a basic property, not an entry of the headers table: AsyncAPI's runtime "
    "expressions can only name `$message.header` or `$message.payload`, so the location "
    "names the property under `$message.header`."
)

CORRELATION = {
    "command": {
        "description": "The command's AMQP `correlation_id` property, copied to its reply; "
        "the reply carries the `message_id` instead when it is absent. " + NOT_A_HEADER,
        "location": CORRELATION_ID_LOCATION,
    },
    "reply": {
        "description": "The reply's AMQP `correlation_id` property: the command's "
        "`correlation_id`, else its `message_id`; absent when the command had neither. "
        + NOT_A_HEADER,
        "location": CORRELATION_ID_LOCATION,
    },
}
"""The components ``correlationIds`` of commands and replies."""


def camel(name: str) -> str:
    """``request.submit`` -> ``requestSubmit``: AsyncAPI ids allow no dots."""
    first, *rest = name.replace("_", ".").split(".")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def ref(path: str) -> dict[str, str]:
    return {"$ref": path}


def _described(text: str, amqp: tuple[properties.Property, ...]) -> str:
    return f"{text}\n\n{properties.table(amqp)}"


def command_message(key: str) -> dict[str, Any]:
    return {
        "name": key,
        "title": f"{key} command",
        "summary": COMMAND_SUMMARIES[key],
        "description": _described(
            "Unknown body fields are ignored and never grant anything. No headers are needed; "
            "a `traceparent` (W3C Trace Context) is continued.",
            properties.COMMAND,
        ),
        "contentType": JSON,
        "headers": ref(SCHEMAS + "CommandHeaders"),
        "payload": ref(SCHEMAS + COMMANDS[key].__name__),
        "correlationId": ref(CORRELATION_IDS + "command"),
        "examples": [{"name": key, "payload": COMMAND_EXAMPLES[key]}],
    }


def _reply_examples(key: str) -> list[dict[str, Any]]:
    examples = [{"name": "ok", "summary": "Accepted.", "payload": REPLY_EXAMPLES[key]}]
    if key == "request.submit":
        examples.append(
            {
                "name": "forbidden",
                "summary": "Refused by rule R1 (the owner is told to change it directly).",
                "payload": ERROR_EXAMPLES["forbidden"],
            }
        )
    if key == "request.decide":
        examples.append(
            {
                "name": "invalid_message",
                "summary": "A rejection without comment (R19).",
                "payload": ERROR_EXAMPLES["invalid_message"],
            }
        )
    return examples


def reply_message(key: str) -> dict[str, Any]:
    model = REPLIES[key]
    return {
        "name": key + REPLY_SUFFIX,
        "title": f"{key} reply",
        "summary": f"The answer to {key}: {model.__name__} or ErrorReply.",
        "description": _described(
            "Published to the default exchange with routing key = the command's `reply_to`. "
            "Its only header is `traceparent`, when the worker traces.",
            properties.REPLY,
        ),
        "contentType": JSON,
        "headers": ref(SCHEMAS + "TracedHeaders"),
        "payload": {"oneOf": [ref(SCHEMAS + model.__name__), ref(SCHEMAS + "ErrorReply")]},
        "correlationId": ref(CORRELATION_IDS + "reply"),
        "bindings": message_binding(key + REPLY_SUFFIX),
        "examples": _reply_examples(key),
    }


def event_message(type_: str) -> dict[str, Any]:
    return {
        "name": type_,
        "title": f"{type_} event",
        "summary": EVENT_SUMMARIES[type_],
        "description": _described(
            "Published from the transactional outbox, so only after the change committed. "
            "Its only header is `traceparent` (the trace of the command that caused it), when "
            "the worker traces.",
            properties.EVENT,
        ),
        "contentType": JSON,
        "headers": ref(SCHEMAS + "TracedHeaders"),
        "payload": ref(SCHEMAS + EVENTS[type_].__name__),
        "bindings": message_binding(type_),
        "examples": [{"name": type_, "payload": EVENT_EXAMPLES[type_]}],
    }


def dead_letter_message() -> dict[str, Any]:
    return {
        "name": "dead_letter",
        "title": "Dead-lettered command",
        "summary": "A command that could not be processed, with its original body and "
        "properties: inspect with `subreq dlq list`, republish with `subreq dlq replay`.",
        "description": _described(
            "Unusable commands (not JSON, not an object, over 64 KiB, unknown routing key, "
            f"schema invalid) are copied here by subreq with `{ERROR_HEADER}` and "
            f"`{ROUTING_KEY_HEADER}`; so are commands whose processing kept failing for "
            "infrastructure reasons. A command the broker itself dead-letters (the command "
            "queue's delivery limit) arrives with `x-death` instead. The body is the "
            "original bytes and need not be JSON.",
            properties.DEAD_LETTER,
        ),
        "headers": ref(SCHEMAS + "DeadLetterHeaders"),
        "payload": {"description": "The original command body, byte for byte."},
        "examples": [DEAD_LETTER_EXAMPLE],
    }


def messages() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The components messages: commands, replies, events, and the dead letter."""
    commands = {camel(key): command_message(key) for key in COMMANDS}
    replies = {f"{camel(key)}Reply": reply_message(key) for key in COMMANDS}
    events = {camel(type_): event_message(type_) for type_ in EVENT_TYPES}
    return commands, replies, events, {"deadLetter": dead_letter_message()}
