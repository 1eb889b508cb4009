"""``python -m consumers.span_export``: the export process of ``consumers.span_shipping``.

It reads frames from stdin (the resource first, then batches of flattened spans), encodes
each batch as OTLP protobuf (``consumers.span_encoding``) and posts it through the SDK's
OTLP/HTTP exporter's client, which reads the ``OTEL_EXPORTER_OTLP_*`` variables this process
inherited (endpoint, headers, timeout, compression, certificates) and retries as it does.
An exporter without that client (another SDK release) gets the batch rebuilt as the SDK's
``ReadableSpan`` objects instead. It ends when its stdin closes (the worker stopping, or
dying), after exporting what it read.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState

from consumers.span_encoding import OtlpEncoder
from consumers.span_shipping import FRAME, Flat, FlatSpan, loaded

log = logging.getLogger(__name__)

SCOPE = InstrumentationScope("subreq")

NICENESS = 10

Post = Callable[[bytes], bool]
"""Sends one encoded request; whether the receiver took it."""


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
    """The frames of ``stream``, read back, until it ends (a torn last frame is dropped)."""
    while True:
        head = stream.read(FRAME.size)
        if len(head) < FRAME.size:
            return
        (size,) = FRAME.unpack(head)
        payload = stream.read(size)
        if len(payload) < size:
            return
        yield loaded(payload)


def rebuild(flat: Flat, resource: Resource) -> ReadableSpan:
    """The SDK's span for one flattened by ``consumers.spans``."""
    span = FlatSpan._make(flat)
    state = TraceState(list(span.trace_state))
    flags, parent = TraceFlags(span.flags), span.parent
    context = SpanContext(span.trace_id, span.span_id, False, flags, state)
    parent_context = (
        None if parent is None else SpanContext(span.trace_id, parent[0], parent[1], flags, state)
    )
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent_context,
        resource=resource,
        attributes=span.attributes,
        events=[Event(n, a, timestamp=t) for n, t, a in span.events],
        links=[
            Link(SpanContext(t, s, remote, TraceFlags(f)), a) for t, s, f, remote, a in span.links
        ],
        kind=SpanKind(span.kind),
        status=Status(StatusCode(span.status_code), span.status_description),
        start_time=span.start,
        end_time=span.end,
        instrumentation_scope=SCOPE,
    )


def encoded_post(exporter: SpanExporter) -> Post | None:
    """How ``exporter`` sends a request already encoded: the HTTP client the SDK's
    ``OTLPSpanExporter`` posts with (``None`` where this release has none), behind the same
    request size limit."""
    send = getattr(getattr(exporter, "_client", None), "export", None)
    if not callable(send):
        return None
    limit = getattr(exporter, "_max_request_size", 0)
    limit = limit if isinstance(limit, int) else 0

    def post(data: bytes) -> bool:
        if 0 < limit < len(data):
            log.warning("dropping a span batch of %d bytes (over %d)", len(data), limit)
            return False
        return bool(getattr(send(data), "success", False))

    return post


def export_all(stream: IO[bytes], exporter: SpanExporter) -> int:
    """Export every batch read from ``stream``; the number of spans read."""
    read = 0
    batches = frames(stream)
    header: dict[str, Any] = next(batches, {})
    resource = _Resource(Resource.create(header))
    post = encoded_post(exporter)
    encoder = OtlpEncoder(resource.attributes, SCOPE.name, SCOPE.version, resource.schema_url or "")
    for batch in batches:
        read += len(batch)
        if post is not None:
            post(encoder.request(batch))
            continue
        spans: Sequence[ReadableSpan] = [rebuild(flat, resource) for flat in batch]
        exporter.export(spans)
    exporter.shutdown()
    return read


def main() -> None:
    # Ctrl-C (or a TERM to the process group) reaches this process too: it ends when the
    # worker closes its stdin, after exporting what the worker flushed on its way out.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Exporting is background work: on a busy machine it takes the CPU the worker, the
    # broker and the database leave, rather than a share of theirs. At this niceness the
    # kernel still gives it about a tenth of a core against each busy process, several
    # times what encoding and posting a thousand commands' spans a second takes.
    os.nice(NICENESS)
    logging.basicConfig(level=logging.WARNING, format="span export: %(message)s")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    export_all(sys.stdin.buffer, OTLPSpanExporter())


if __name__ == "__main__":
    main()
