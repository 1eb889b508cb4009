"""subreq's span recorder: the OpenTelemetry tracing API implemented lean, for the worker.

With every span exported, the SDK's ``Tracer`` and ``Span`` cost the worker more per command
than the work they describe (validating each attribute, locks per span, a copy at the end,
then a conversion before export). These spans only keep what the OTLP encoder needs and, when
they end, hand one tuple to the recorder (``consumers.span_shipping``), which ships it to an
export process; there the SDK rebuilds its own ``ReadableSpan`` (validating attributes then)
and the SDK's OTLP exporter sends it. The sampler is the SDK's own, read from
``OTEL_TRACES_SAMPLER``; the default (``parentbased_always_on``) is decided here without a
call. Everything instrumented through ``workflow.telemetry`` records the same spans with the
SDK's tracer installed instead (the tests' in-memory exporter).
"""

from __future__ import annotations

import random
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import DEFAULT_ON, Decision, Sampler
from opentelemetry.trace import (
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.span import DEFAULT_TRACE_STATE, TraceState
from opentelemetry.util.types import Attributes

from consumers.span_shipping import Flat

Record = Callable[[Flat], None]

SAMPLED = TraceFlags(TraceFlags.SAMPLED)
UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)

# Enum values read once: an enum member's ``.value`` is a Python-level property call.
_UNSET = (StatusCode.UNSET.value, None)
_OK = StatusCode.OK.value
_ERROR = StatusCode.ERROR.value
_PRODUCER = SpanKind.PRODUCER.value
_SAMPLED = int(SAMPLED)
_NO_STATE = DEFAULT_TRACE_STATE  # what a context read without ``tracestate`` holds


def _described(exception: BaseException, escaped: bool = False) -> dict[str, Any]:
    """An ``exception`` event's attributes, as the SDK writes them."""
    kind = type(exception)
    module = kind.__module__
    return {
        "exception.type": (
            f"{module}.{kind.__qualname__}"
            if module and module != "builtins"
            else kind.__qualname__
        ),
        "exception.message": str(exception),
        "exception.stacktrace": "".join(traceback.format_exception(exception)),
        "exception.escaped": str(escaped),
    }


def _new_id(bits: int, invalid: int) -> int:
    while True:
        value = random.getrandbits(bits)
        if value != invalid:
            return value


def _span_id() -> int:
    return random.getrandbits(64) or _new_id(64, INVALID_SPAN_ID)  # 0 is the invalid id


class LeanSpan(trace.Span):
    """A recording span: plain fields, flattened once, when it ends."""

    __slots__ = (
        "_attributes",
        "_context",
        "_end",
        "_events",
        "_kind",
        "_links",
        "_name",
        "_parent",
        "_record",
        "_start",
        "_status",
        "_traceparent",
    )

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Attributes,
        links: Sequence[Link] | None,
        start_time: int | None,
        record: Record,
    ) -> None:
        self._name = name
        self._context = context
        self._parent = None if parent is None else (parent.span_id, parent.is_remote)
        self._kind = kind._value_
        self._traceparent: str | None = None
        self._attributes: dict[str, Any] = dict(attributes) if attributes else {}
        self._links = list(links) if links else []
        self._events: list[tuple[str, int, dict[str, Any]]] = []
        self._status: tuple[int, str | None] = _UNSET
        self._start = start_time if start_time is not None else time.time_ns()
        self._end: int | None = None
        self._record = record

    def get_span_context(self) -> SpanContext:
        return self._context

    @property
    def traceparent(self) -> str:
        """What ``workflow.telemetry`` stores and sends for this span, formatted once."""
        if self._traceparent is None:
            context = self._context
            self._traceparent = (
                f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"
            )
        return self._traceparent

    def is_recording(self) -> bool:
        return self._end is None

    def set_attribute(self, key: str, value: Any) -> None:
        if self._end is None:
            self._attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self._end is None:
            self._attributes.update(attributes)

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._end is None:
            moment = timestamp if timestamp is not None else time.time_ns()
            self._events.append((name, moment, dict(attributes) if attributes else {}))

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        if self._end is None and context.is_valid:
            self._links.append(Link(context, attributes))

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end is not None or self._status[0] == _OK:
            return  # OK is final, as in the SDK
        if isinstance(status, Status):
            code, text = status.status_code, status.description
        else:
            code, text = status, description
        self._status = (code.value, text if code is StatusCode.ERROR else None)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        described = _described(exception, escaped)
        if attributes:
            described.update(attributes)
        self.add_event("exception", described, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        self._end = end_time if end_time is not None else time.time_ns()
        # A SpanContext is a tuple (trace id, span id, is remote, flags, state, is valid):
        # unpacked, it costs none of its properties' calls.
        trace_id, span_id, _remote, flags, state, _valid = self._context
        links = []
        for link in self._links:
            link_trace, link_span, remote, link_flags, _state, _ok = link.context
            extra = link.attributes
            links.append(
                (link_trace, link_span, int(link_flags), remote, dict(extra) if extra else {})
            )
        self._record(
            (
                self._name,
                trace_id,
                span_id,
                int(flags),
                tuple(state.items()) if state else (),
                self._parent,
                self._kind,
                self._start,
                self._end,
                self._attributes,
                tuple(links),
                tuple(self._events),
                self._status[0],
                self._status[1],
            )
        )


class _PublishSpan:
    """A sampled publish span continuing a stored context: never made current and never a
    parent, so it needs no span object, only its ids, its clock and, at its end, the same
    flat tuple a ``LeanSpan`` would hand over. Entered, it gives the published message's
    trace headers. ``attributes`` is the caller's fresh dict, kept as it is."""

    __slots__ = ("_attributes", "_name", "_parent", "_record", "_span_id", "_start", "headers")

    def __init__(
        self, name: str, parent: SpanContext, attributes: dict[str, Any], record: Record
    ) -> None:
        self._name = name
        self._parent = parent
        self._attributes = attributes
        self._record = record
        self._span_id = span_id = _span_id()
        self.headers = {"traceparent": f"00-{parent[0]:032x}-{span_id:016x}-01"}
        self._start = time.time_ns()

    def __enter__(self) -> dict[str, str]:
        return self.headers

    def __exit__(self, _kind: Any, exc: BaseException | None, _tb: Any) -> None:
        end = time.time_ns()
        events: tuple[tuple[str, int, dict[str, Any]], ...] = ()
        status: tuple[int, str | None] = _UNSET
        if exc is not None:  # as ``workflow.telemetry.producer_span`` records a failure
            events = (("exception", end, _described(exc)),)
            status = (_ERROR, f"{type(exc).__name__}: {exc}")
        # A SpanContext is a tuple: (trace id, span id, is remote, ...).
        parent = self._parent
        self._record(
            (
                self._name,
                parent[0],
                self._span_id,
                _SAMPLED,
                (),
                (parent[1], parent[2]),
                _PRODUCER,
                self._start,
                end,
                self._attributes,
                (),
                events,
                *status,
            )
        )


class LeanTracer(trace.Tracer):
    def __init__(self, sampler: Sampler, record: Record) -> None:
        self._sampler = sampler
        self._default = sampler is DEFAULT_ON
        self._record = record

    def publish_span(
        self, name: str, parent: SpanContext, attributes: dict[str, Any]
    ) -> _PublishSpan | None:
        """The cheap publish span (``workflow.telemetry.producer_span``) where the default
        sampler records it and the stored context carries no trace state; ``None``: make
        an ordinary one."""
        flags, state = parent[3], parent[4]  # read as tuple items, without the properties
        if not self._default or not flags & _SAMPLED or (state is not _NO_STATE and state):
            return None
        return _PublishSpan(name, parent, attributes, self._record)

    def _sampled(
        self,
        parent: SpanContext,
        context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind,
        attributes: Attributes,
        links: Sequence[Link] | None,
    ) -> tuple[bool, TraceState, Attributes]:
        if self._default:  # parentbased_always_on, decided without the SDK's call
            sampled = parent.trace_flags.sampled if parent.is_valid else True
            return sampled, parent.trace_state, attributes
        result = self._sampler.should_sample(context, trace_id, name, kind, attributes, links)
        extra = dict(attributes or {})
        extra.update(result.attributes or {})
        state = result.trace_state if result.trace_state is not None else parent.trace_state
        return result.decision is Decision.RECORD_AND_SAMPLE, state, extra

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> trace.Span:
        parent = trace.get_current_span(context).get_span_context()
        trace_id = parent.trace_id if parent.is_valid else _new_id(128, INVALID_TRACE_ID)
        sampled, state, attributes = self._sampled(
            parent, context, trace_id, name, kind, attributes, links
        )
        own = SpanContext(
            trace_id,
            _span_id(),
            is_remote=False,
            trace_flags=SAMPLED if sampled else UNSAMPLED,
            trace_state=state,
        )
        if not sampled:
            return NonRecordingSpan(own)
        return LeanSpan(
            name,
            own,
            parent if parent.is_valid else None,
            kind,
            attributes,
            links,
            start_time,
            self._record,
        )

    def start_as_current_span(  # type: ignore[override]
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> _Current:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        return _Current(span, end_on_exit, record_exception, set_status_on_exception)


class _Current:
    """``trace.use_span`` as a class: the span made current inside the block, an exception
    recorded and the span ended as the API's generator does, without the two generator
    context managers (the API's and the one around it) every processed command paid for."""

    __slots__ = ("_end_on_exit", "_record_exception", "_set_status", "_span", "_token")

    def __init__(
        self, span: trace.Span, end_on_exit: bool, record_exception: bool, set_status: bool
    ) -> None:
        self._span = span
        self._end_on_exit = end_on_exit
        self._record_exception = record_exception
        self._set_status = set_status

    def __enter__(self) -> trace.Span:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(self, _kind: Any, exc: BaseException | None, _tb: Any) -> None:
        span = self._span
        try:
            otel_context.detach(self._token)
            if isinstance(exc, Exception) and span.is_recording():
                if self._record_exception:
                    span.record_exception(exc)
                if self._set_status:
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        finally:
            if self._end_on_exit:
                span.end()


class LeanTracerProvider(trace.TracerProvider):
    """One tracer for every name: subreq's spans all belong to the ``subreq`` scope."""

    def __init__(
        self,
        record: Record,
        sampler: Sampler | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:
        self._tracer = LeanTracer(sampler if sampler is not None else DEFAULT_ON, record)
        self._close = close

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        return self._tracer

    def shutdown(self) -> None:
        if self._close is not None:
            self._close()
