"""Log lines carry the active span's ids, so a line leads to its trace and back."""

from __future__ import annotations

import logging

import orjson
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consumers.logs import JsonFormatter, TextFormatter, TraceIds


def _record() -> logging.LogRecord:
    record = logging.LogRecord("subreq", logging.INFO, __file__, 1, "handled", None, None)
    assert TraceIds().filter(record)
    return record


def test_a_line_inside_a_span_names_its_trace_and_span(spans: InMemorySpanExporter) -> None:
    with trace.get_tracer("test").start_as_current_span("work") as span:
        record = _record()
    context = span.get_span_context()
    entry = orjson.loads(JsonFormatter().format(record))
    assert entry["trace_id"] == f"{context.trace_id:032x}"
    assert entry["span_id"] == f"{context.span_id:016x}"
    assert f"trace_id={context.trace_id:032x}" in TextFormatter().format(record)


def test_a_line_outside_any_span_has_no_trace_ids() -> None:
    entry = orjson.loads(JsonFormatter().format(_record()))
    assert "trace_id" not in entry
    assert "span_id" not in entry
