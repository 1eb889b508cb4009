"""The AsyncAPI AMQP bindings of subreq's exchanges, queues and messages."""

from __future__ import annotations

from typing import Any

AMQP_BINDING_VERSION = "0.3.0"


def exchange_binding(name: str) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "routingKey",
            "exchange": {
                "name": name,
                "type": "topic",
                "durable": True,
                "autoDelete": False,
                "vhost": "/",
            },
            "bindingVersion": AMQP_BINDING_VERSION,
        }
    }


def queue_binding(name: str) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "queue",
            "queue": {
                "name": name,
                "durable": True,
                "exclusive": False,
                "autoDelete": False,
                "vhost": "/",
            },
            "bindingVersion": AMQP_BINDING_VERSION,
        }
    }


def message_binding(message_type: str | None = None) -> dict[str, Any]:
    binding: dict[str, Any] = {"contentEncoding": "utf-8", "bindingVersion": AMQP_BINDING_VERSION}
    if message_type is not None:
        binding["messageType"] = message_type
    return {"amqp": binding}
