"""Tracing by the OpenTelemetry messaging conventions, through the API alone: every call
here is a no-op until a tracer provider is installed (``consumers.tracing`` installs one
from the ``OTEL_*`` variables), so a worker without them pays next to nothing.

A command's trace reaches its events and emails through the database: the trace
context is stored with each outbox row and delivery record *when it is written*, so the
relay's publish and the notifier's SMTP spans join the command's trace, not whatever
the relay was doing when it sent them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TracerProvider,
)

__all__ = [
    "Context",
    "Link",
    "SpanKind",
    "carried",
    "current_link",
    "current_trace_id",
    "current_traceparent",
    "headers_of",
    "link_from",
    "link_to",
    "messaging",
    "producer_span",
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


_VERSION_00 = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


_READ: dict[str, tuple[SpanContext, Context] | None] = {}
"""``traceparent`` values read lately, with the context each stands for: a command's is
read again for its reply, its settle link and the relay's publish."""
_READ_MAX = 4096


def _remote(traceparent: str) -> tuple[SpanContext, Context] | None:
    """A version-00 ``traceparent`` read without the propagator API's generality (it runs
    several times per message); ``None`` for anything else, which the propagator reads."""
    try:
        return _READ[traceparent]
    except KeyError:
        pass
    if len(_READ) >= _READ_MAX:
        _READ.clear()
    remote = _read(traceparent)
    found = None
    if remote is not None:
        found = (remote, trace.set_span_in_context(NonRecordingSpan(remote), Context()))
    _READ[traceparent] = found
    return found


def _read(traceparent: str) -> SpanContext | None:
    found = _VERSION_00.fullmatch(traceparent)
    if found is None:
        return None
    trace_id, span_id = int(found[1], 16), int(found[2], 16)
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(found[3], 16)))


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
    if not found:
        return Context()
    if len(found) == 1 and "traceparent" in found:  # the usual case: no tracestate
        remote = _remote(found["traceparent"])
        if remote is not None:
            return remote[1]
    return propagate.extract(found, context=Context())


def link_from(traceparent: str | None) -> Link | None:
    """A link to the span a stored ``traceparent`` names, if it names a valid one."""
    if not traceparent:
        return None
    remote = _remote(traceparent)
    if remote is not None:
        return Link(remote[0])
    return link_to(carried({"traceparent": traceparent}))


def _traceparent(span: trace.Span) -> str | None:
    """The span's ``traceparent``: kept by the worker's own spans (``consumers.spans``),
    formatted here for any other."""
    kept = getattr(span, "traceparent", None)
    if kept is not None:
        return str(kept)
    span_context = span.get_span_context()
    if not span_context.is_valid:
        return None
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
        f"{int(span_context.trace_flags):02x}"
    )


def _headers(span: trace.Span) -> dict[str, str]:
    traceparent = _traceparent(span)
    if traceparent is None:
        return {}
    headers = {"traceparent": traceparent}
    trace_state = span.get_span_context().trace_state
    if trace_state:
        headers["tracestate"] = trace_state.to_header()
    return headers


def headers_of(context: Context | None = None) -> dict[str, str]:
    """``traceparent`` (and ``tracestate``) of ``context`` or of the current span; empty
    when no span is recording, which is always the case with tracing off."""
    return _headers(trace.get_current_span(context))


def producer_span(
    name: str, traceparent: str, attributes: dict[str, Any]
) -> AbstractContextManager[dict[str, str]]:
    """A publish span continuing the stored ``traceparent``, yielding the headers the
    published message carries (``attributes``: a fresh dict, the span's from here on). It
    is never made the current span (nothing runs inside it that looks for one), which
    spares the context switching per message. A recorder that offers ``publish_span`` (the
    worker's, ``consumers.spans``) records it without a span object, and it is returned
    as it is: no generator around it, as this runs for every reply and event."""
    remote = _remote(traceparent) if isinstance(traceparent, str) and traceparent else None
    if remote is not None:
        publish = getattr(tracer(), "publish_span", None)
        cheap = publish(name, remote[0], attributes) if publish is not None else None
        if cheap is not None:
            return cheap  # type: ignore[no-any-return]
    return _producer_span(name, traceparent, attributes)


@contextmanager
def _producer_span(
    name: str, traceparent: str, attributes: Mapping[str, str | int]
) -> Iterator[dict[str, str]]:
    span = tracer().start_span(
        name,
        context=carried({"traceparent": traceparent}),
        kind=SpanKind.PRODUCER,
        attributes=attributes,
    )
    try:
        yield _headers(span)
    except BaseException as exc:
        span.record_exception(exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        span.end()


def link_to(context: Context) -> Link | None:
    """A link to the span ``context`` holds, if it holds a valid one."""
    span_context = trace.get_current_span(context).get_span_context()
    return Link(span_context) if span_context.is_valid else None


def current_traceparent() -> str | None:
    """The active span as a W3C ``traceparent``, to store with what it writes; ``None``
    without one (one cheap check when tracing is off)."""
    return _traceparent(trace.get_current_span())


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
