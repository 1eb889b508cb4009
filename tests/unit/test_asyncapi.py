"""docs/asyncapi.yaml is current, well formed, complete, and its examples are real.

The examples are validated by the models the document's schemas come from; that they
are what the real service produces is tests/unit/test_asyncapi_examples.py, that the
official parser accepts the document and each example fits its schemas is
tests/unit/test_asyncapi_parser.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from consumers.cli import app
from workflow.contract import asyncapi as spec
from workflow.contract import envelopes, examples, names
from workflow.contract.messages import COMMANDS, Event, Reply
from workflow.contract.names import EVENT_TYPES

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "docs" / "asyncapi.yaml"
REGENERATE = "run `subreq asyncapi > docs/asyncapi.yaml`"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return spec.document()


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references: {ref}"
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref}: {part} is not in an object"
        assert part in node, f"{ref} does not resolve: no {part}"
        node = node[part]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


# --- the checked-in copy ------------------------------------------------------------------


def test_the_checked_in_document_is_current(doc: dict[str, Any]) -> None:
    assert CHECKED_IN.read_text() == spec.to_yaml(doc), f"docs/asyncapi.yaml is stale: {REGENERATE}"


def test_the_cli_prints_the_document_as_yaml_or_json(doc: dict[str, Any]) -> None:
    runner = CliRunner()
    as_yaml = runner.invoke(app, ["asyncapi"])
    assert as_yaml.exit_code == 0, as_yaml.output
    assert as_yaml.stdout == spec.to_yaml(doc)
    assert yaml.safe_load(as_yaml.stdout) == json.loads(spec.to_json(doc))
    as_json = runner.invoke(app, ["asyncapi", "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == json.loads(spec.to_json(doc))


# --- completeness -------------------------------------------------------------------------


def test_every_command_and_event_has_a_channel(doc: dict[str, Any]) -> None:
    addresses = {channel["address"] for channel in doc["channels"].values()}
    assert set(COMMANDS) <= addresses
    assert set(EVENT_TYPES) <= addresses
    assert names.DEAD_QUEUE in addresses
    assert None in addresses, "the reply channel's address is the command's reply_to"


def test_the_names_are_those_of_the_contract(doc: dict[str, Any]) -> None:
    assert spec.COMMANDS_EXCHANGE == names.COMMANDS_EXCHANGE
    assert spec.EVENTS_EXCHANGE == names.EVENTS_EXCHANGE
    assert spec.COMMANDS_QUEUE == names.COMMANDS_QUEUE
    assert spec.DEAD_QUEUE == names.DEAD_QUEUE
    exchanges = {}
    for channel in doc["channels"].values():
        binding = channel.get("bindings")
        if binding is None:
            continue
        binding = resolve(doc, binding["$ref"])["amqp"] if "$ref" in binding else binding["amqp"]
        if binding["is"] == "routingKey":
            exchanges[channel["address"]] = binding["exchange"]
        else:
            assert binding["queue"]["name"] == channel["address"] == names.DEAD_QUEUE
    for key in COMMANDS:
        assert exchanges[key]["name"] == names.COMMANDS_EXCHANGE
    for type_ in EVENT_TYPES:
        assert exchanges[type_]["name"] == names.EVENTS_EXCHANGE
    for exchange in exchanges.values():
        assert (exchange["type"], exchange["durable"]) == ("topic", True)


# --- structure ----------------------------------------------------------------------------


def test_the_document_is_asyncapi_3_1(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.1.0"
    assert {"info", "servers", "channels", "operations", "components"} <= set(doc)
    assert doc["servers"]["broker"]["protocol"] == "amqp"
    for name in doc["channels"]:
        assert name.replace("-", "").replace("_", "").isalnum(), f"channel id {name!r}"


def test_every_reference_resolves(doc: dict[str, Any]) -> None:
    found = list(refs(doc))
    assert found
    for ref in found:
        resolve(doc, ref)


def test_every_operation_uses_its_channel_and_its_channels_messages(doc: dict[str, Any]) -> None:
    actions = {"send": 0, "receive": 0}
    for name, operation in doc["operations"].items():
        actions[operation["action"]] += 1
        channel_ref = operation["channel"]["$ref"]
        channel = resolve(doc, channel_ref)
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name
            resolve(doc, message["$ref"])
        if operation["action"] == "send":
            reply = operation["reply"]
            assert reply["address"]["location"] == "$message.header#/reply_to"
            reply_channel = reply["channel"]["$ref"]
            for message in reply["messages"]:
                assert message["$ref"].startswith(reply_channel + "/messages/"), name
        assert channel["messages"], name
    assert actions["send"] == len(COMMANDS)
    assert actions["receive"] >= len(EVENT_TYPES) + 1


def test_every_message_has_an_example(doc: dict[str, Any]) -> None:
    for name, message in doc["components"]["messages"].items():
        assert message.get("examples"), f"{name} has no example"


def test_shared_shapes_are_components(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert {"RequestView", "Summary", "ErrorReply", "HistoryEntry"} <= set(schemas)
    assert not any("discriminator" in json.dumps(s) for s in schemas.values())


# --- examples -----------------------------------------------------------------------------


def test_the_examples_fit_the_models_of_their_schemas() -> None:
    for key, body in examples.COMMAND_EXAMPLES.items():
        COMMANDS[key].model_validate(body)
    for key, reply in examples.REPLY_EXAMPLES.items():
        envelopes.REPLIES[key].model_validate(reply)
        Reply.model_validate(reply)
    for reply in examples.ERROR_EXAMPLES.values():
        envelopes.ErrorReply.model_validate(reply)
        Reply.model_validate(reply)
    for type_, event in examples.EVENT_EXAMPLES.items():
        assert event["type"] == type_
        envelopes.EVENTS[type_].model_validate(event)
        Event.model_validate(event)


def test_headers_are_real_headers_and_no_property_is_called_a_header(
    doc: dict[str, Any],
) -> None:
    """AMQP properties are not headers: a generator would put them in the headers table."""
    amqp_properties = {"message_id", "correlation_id", "reply_to", "type", "timestamp"}
    for name, message in doc["components"]["messages"].items():
        if name == "deadLetter":
            headers = resolve(doc, message["headers"]["$ref"])
            assert not amqp_properties & set(headers["properties"]), name
            assert {
                names.ERROR_HEADER,
                names.ROUTING_KEY_HEADER,
                names.DROPPED_HEADERS_HEADER,
                names.REPLAYS_HEADER,
                names.DELIVERY_COUNT_HEADER,
                "x-death",
            } <= set(headers["properties"])
            for example in message["examples"]:
                envelopes.DeadLetterHeaders.model_validate(example["headers"])
                assert not amqp_properties & set(example["headers"]), name
            continue
        # The others' only headers are the W3C Trace Context (contract additions: tracing).
        headers = resolve(doc, message["headers"]["$ref"])
        assert set(headers["properties"]) == {"traceparent", "tracestate"}, name
        for example in message["examples"]:
            assert "headers" not in example, name


def test_replies_and_events_state_their_properties(doc: dict[str, Any]) -> None:
    messages = doc["components"]["messages"]
    for key in COMMANDS:
        reply = messages[f"{spec.camel(key)}Reply"]
        assert reply["bindings"]["amqp"]["messageType"] == key + names.REPLY_SUFFIX
        correlation = resolve(doc, reply["correlationId"]["$ref"])
        assert correlation["location"] == "$message.header#/correlation_id"
        assert "absent when the command had neither" in correlation["description"]
        for prop in ("content_type", "correlation_id", "type", "timestamp"):
            assert f"| `{prop}` |" in reply["description"], (key, prop)
    for type_ in EVENT_TYPES:
        event = messages[spec.camel(type_)]
        assert event["bindings"]["amqp"]["messageType"] == type_
        for prop in ("content_type", "message_id", "type", "timestamp", "delivery_mode"):
            assert f"| `{prop}` |" in event["description"], (type_, prop)
    for name, operation in doc["operations"].items():
        if name != "receiveDeadLetters" and operation["action"] == "receive":
            assert operation["bindings"]["amqp"]["timestamp"] is True, name


def test_the_bindings_use_the_servers_vhost(doc: dict[str, Any]) -> None:
    server = doc["servers"]["broker"]
    assert server["pathname"] == "/{vhost}"
    assert server["host"] == "{host}:{port}"
    assert set(server["variables"]) == {"host", "port", "vhost"}
    for name, binding in doc["components"]["channelBindings"].items():
        amqp = binding["amqp"]
        assert (amqp.get("exchange") or amqp["queue"])["vhost"] == "{vhost}", name
