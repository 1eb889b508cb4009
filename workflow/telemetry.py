"""Tracing by the OpenTelemetry messaging conventions, through the API alone: every call
here is a no-op until a tracer provider is installed (``consumers.tracing`` installs one
from the ``OTEL_*`` variables), so a worker without them pays next to nothing.

A command's trace reaches its events and emails through the database: the trace
context is stored with each outbox row and delivery record *when it is written*, so the
relay's publish and the notifier's SMTP spans join the command's trace, not whatever
the relay was doing when it sent them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Tracer, TracerProvider

__all__ = [
    "Context",
    "Link",
    "SpanKind",
    "carried",
    "current_link",
    "current_trace_id",
    "current_traceparent",
    "headers_of",
    "link_to",
    "messaging",
    "tracer",
]

TRACE_HEADERS = ("traceparent", "tracestate")
"""W3C Trace Context, as AMQP headers of commands, replies and events."""

SYSTEM = "rabbitmq"


_current: list[tuple[TracerProvider, Tracer]] = []


def tracer() -> Tracer:
    """subreq's tracer of the provider installed now (a proxy until one is), created once
    per provider: asking the SDK's provider for it costs more than many spans' worth. The
    provider is held, so a provider installed later is never mistaken for it."""
    provider = trace.get_tracer_provider()
    if not _current or _current[0][0] is not provider:
        _current[:] = [(provider, provider.get_tracer("subreq"))]
    return _current[0][1]


def carried(carrier: Mapping[str, Any] | None) -> Context:
    """The context a message's headers (or a stored ``traceparent``) carry; an empty one,
    so a new trace starts, when they carry none or a malformed one."""
    if not carrier:
        return Context()
    found = {}
    for name in TRACE_HEADERS:
        value = carrier.get(name)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value:
            found[name] = value
    return propagate.extract(found, context=Context()) if found else Context()


def headers_of(context: Context | None = None) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of ``context`` or of the current span; empty
    when no span is recording, which is always the case with tracing off."""
    headers: dict[str, str] = {}
    propagate.inject(headers, context=context)
    return headers


def link_to(context: Context) -> Link | None:
    """A link to the span ``context`` holds, if it holds a valid one."""
    span_context = trace.get_current_span(context).get_span_context()
    return Link(span_context) if span_context.is_valid else None


def current_traceparent() -> str | None:
    """The active span as a W3C ``traceparent``, to store with what it writes; ``None``
    without one (one cheap check when tracing is off)."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


@contextmanager
def within(traceparent: str | None) -> Iterator[None]:
    """The stored ``traceparent`` as the active context for what is written inside, so a row
    written for one of many traces in a shared transaction carries its own; nothing to do
    without one (tracing off)."""
    if not traceparent:
        yield
        return
    token = otel_context.attach(carried({"traceparent": traceparent}))
    try:
        yield
    finally:
        otel_context.detach(token)


def current_link() -> list[Link]:
    """A link to the active span (a batch the span at hand is one message of), if any."""
    span_context = trace.get_current_span().get_span_context()
    return [Link(span_context)] if span_context.is_valid else []


def current_trace_id() -> str | None:
    """The active span's trace id as 32 hex digits, for log lines; ``None`` without one."""
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None


def messaging(
    operation: str, destination: str, routing_key: str | None, message_id: str | None
) -> dict[str, str]:
    """The messaging semantic conventions' attributes of one message."""
    attributes = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": operation,
        "messaging.destination.name": destination,
    }
    if routing_key is not None:
        attributes["messaging.rabbitmq.destination.routing_key"] = routing_key
    if message_id is not None:
        attributes["messaging.message.id"] = message_id
    return attributes
