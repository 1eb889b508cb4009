"""``python -m consumers.span_export``: the export process of ``consumers.span_shipping``.

It reads frames from stdin (the resource first, then batches of flattened spans), rebuilds
each batch as the SDK's ``ReadableSpan`` objects and exports it with the SDK's OTLP/HTTP
exporter, which reads the ``OTEL_EXPORTER_OTLP_*`` variables this process inherited. It ends
when its stdin closes (the worker stopping, or dying), after exporting what it read.
"""

from __future__ import annotations

import logging
import pickle
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import IO, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from consumers.span_shipping import FRAME, Flat

SCOPE = InstrumentationScope("subreq")


class _Resource(Resource):
    """One resource for every span, hashed once: the OTLP encoder groups spans by resource,
    and ``Resource.__hash__`` serialises its attributes as JSON at every call."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.attributes, resource.schema_url)
        self._hash = super().__hash__()

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return super().__eq__(other)


def frames(stream: IO[bytes]) -> Iterator[Any]:
    """The unpickled frames of ``stream`` until it ends (a torn last frame is dropped)."""
    while True:
        head = stream.read(FRAME.size)
        if len(head) < FRAME.size:
            return
        (size,) = FRAME.unpack(head)
        payload = stream.read(size)
        if len(payload) < size:
            return
        yield pickle.loads(payload)


def rebuild(flat: Flat, resource: Resource) -> ReadableSpan:
    """The span ``consumers.span_shipping.flatten`` flattened."""
    (
        name,
        trace_id,
        span_id,
        flags,
        trace_state,
        parent,
        kind,
        start,
        end,
        attributes,
        links,
        events,
        status_code,
        status_description,
    ) = flat
    state = TraceState(list(trace_state))
    context = SpanContext(trace_id, span_id, False, TraceFlags(flags), state)
    parent_context = (
        None
        if parent is None
        else SpanContext(trace_id, parent[0], parent[1], TraceFlags(flags), state)
    )
    return ReadableSpan(
        name=name,
        context=context,
        parent=parent_context,
        resource=resource,
        attributes=attributes,
        events=[Event(n, a, timestamp=t) for n, t, a in events],
        links=[Link(SpanContext(t, s, remote, TraceFlags(f)), a) for t, s, f, remote, a in links],
        kind=SpanKind(kind),
        status=Status(StatusCode(status_code), status_description),
        start_time=start,
        end_time=end,
        instrumentation_scope=SCOPE,
    )


def export_all(stream: IO[bytes], exporter: SpanExporter) -> int:
    """Export every batch read from ``stream``; the number of spans read."""
    read = 0
    batches = frames(stream)
    header: dict[str, Any] = next(batches, {})
    resource = _Resource(Resource.create(header))
    for batch in batches:
        spans: Sequence[ReadableSpan] = [rebuild(flat, resource) for flat in batch]
        read += len(spans)
        exporter.export(spans)
    exporter.shutdown()
    return read


def main() -> None:
    # Ctrl-C (or a TERM to the process group) reaches this process too: it ends when the
    # worker closes its stdin, after exporting what the worker flushed on its way out.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="span export: %(message)s")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    export_all(sys.stdin.buffer, OTLPSpanExporter())


if __name__ == "__main__":
    main()
