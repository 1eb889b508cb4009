"""The AsyncAPI AMQP bindings (0.3.0) of subreq's exchanges, queues, operations and messages."""

from __future__ import annotations

from typing import Any

AMQP_BINDING_VERSION = "0.3.0"

VHOST = "{vhost}"
"""The broker server's ``vhost`` variable: every exchange and queue lives in the vhost of
the AMQP URL, so separate vhosts are separate installations."""


def exchange_binding(name: str) -> dict[str, Any]:
    return {
        "amqp": {
            "is": "routingKey",
            "exchange": {
                "name": name,
                "type": "topic",
                "durable": True,
                "autoDelete": False,
                "vhost": VHOST,
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
                "vhost": VHOST,
            },
            "bindingVersion": AMQP_BINDING_VERSION,
        }
    }


def operation_binding(*, persistent: bool, timestamp: bool = False) -> dict[str, Any]:
    """``deliveryMode`` 2 for persistent messages; ``timestamp`` when they carry the AMQP
    ``timestamp`` property."""
    binding: dict[str, Any] = {}
    if persistent:
        binding["deliveryMode"] = 2
    if timestamp:
        binding["timestamp"] = True
    return {"amqp": {**binding, "bindingVersion": AMQP_BINDING_VERSION}}


def message_binding(message_type: str) -> dict[str, Any]:
    """The AMQP ``type`` property of a message subreq publishes."""
    return {"amqp": {"messageType": message_type, "bindingVersion": AMQP_BINDING_VERSION}}
