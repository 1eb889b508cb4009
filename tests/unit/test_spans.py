"""The worker's lean span recorder (``consumers.spans``) records what the SDK would: the same
spans, parents, links, attributes, events and status for the same instrumented code, under the
same sampler; and the shipping to the export process loses nothing it does not count."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, DEFAULT_ON, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once

from benchmarks.otlp_sink import otlp_sink
from consumers import tracing
from consumers.span_export import rebuild
from consumers.span_shipping import Flat, SpanShipper
from consumers.spans import LeanTracerProvider
from workflow.errors import ConfigurationError
from workflow.telemetry import carried, headers_of, link_from, messaging, producer_span, tracer

INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
UNSAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"


def _install(provider: trace.TracerProvider) -> None:
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace.set_tracer_provider(provider)


@pytest.fixture
def restore_provider() -> Iterator[None]:
    yield
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()


def sdk_spans(sampler: Sampler = DEFAULT_ON) -> tuple[list[ReadableSpan], dict[str, str]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _install(provider)
    headers = scenario()
    return list(exporter.get_finished_spans()), headers


def lean_spans(sampler: Sampler = DEFAULT_ON) -> tuple[list[ReadableSpan], dict[str, str]]:
    recorded: list[Flat] = []
    _install(LeanTracerProvider(recorded.append, sampler))
    headers = scenario()
    resource = Resource.create({})
    return [rebuild(flat, resource) for flat in recorded], headers


def scenario() -> dict[str, str]:
    """A command's spans as the worker makes them: a batch span linking the message, the
    message's process span in its own trace, a failing step, a reply publish."""
    incoming = carried({"traceparent": INCOMING})
    batch_link = link_from(INCOMING)
    with (
        tracer().start_as_current_span(
            "process subreq.commands",
            kind=SpanKind.CONSUMER,
            links=[batch_link] if batch_link else [],
            attributes={**messaging("process", "subreq.commands", None, None), "batch": 1},
        ),
        tracer().start_as_current_span(
            "process request.submit",
            context=incoming,
            kind=SpanKind.CONSUMER,
            attributes=messaging("process", "subreq.commands", "request.submit", "m-1"),
        ) as span,
    ):
        span.add_event("preloaded", {"accounts": 1})
        stored = headers_of()["traceparent"] if headers_of() else None
        with (
            pytest.raises(ValueError, match="bad"),
            tracer().start_as_current_span("transaction", kind=SpanKind.CLIENT),
        ):
            raise ValueError("bad")
    assert (
        stored is not None
        or not trace.get_current_span(incoming).get_span_context().trace_flags.sampled
    )
    with producer_span(
        "publish amq.gen-reply",
        stored or UNSAMPLED,
        messaging("publish", "", "amq.gen-reply", "m-1"),
    ) as headers:
        return headers


def shape(found: list[ReadableSpan]) -> list[tuple[Any, ...]]:
    """Everything but the random ids: parents and links named by span name, the trace by
    whether it is the incoming one."""
    by_id = {s.context.span_id: s.name for s in found if s.context is not None}

    def parent_of(s: ReadableSpan) -> str | None:
        if s.parent is None:
            return None
        return by_id.get(s.parent.span_id, f"remote {s.parent.span_id:016x}")

    return sorted(
        (
            s.name,
            s.kind,
            parent_of(s),
            s.context is not None and f"{s.context.trace_id:032x}" == INCOMING.split("-")[1],
            tuple(sorted(dict(s.attributes or {}).items())),
            tuple(
                by_id.get(link.context.span_id, f"{link.context.span_id:016x}") for link in s.links
            ),
            tuple((e.name, tuple(sorted(dict(e.attributes or {})))) for e in s.events),
            s.status.status_code,
            (s.status.description or "").split(":")[0],
        )
        for s in found
    )


def test_the_lean_recorder_records_the_spans_the_sdk_records(restore_provider: None) -> None:
    sdk, sdk_headers = sdk_spans()
    lean, lean_headers = lean_spans()
    assert len(lean) == 4
    assert shape(lean) == shape(sdk)
    failed = next(s for s in lean if s.name == "transaction")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.events[0].attributes is not None
    assert failed.events[0].attributes["exception.type"] == "ValueError"
    # the reply continues the command's trace, sampled
    assert lean_headers["traceparent"].split("-")[1] == INCOMING.split("-")[1]
    assert lean_headers["traceparent"].endswith("-01")
    assert sdk_headers["traceparent"].endswith("-01")


def failed_publish() -> dict[str, str]:
    """A publish continuing a stored context that fails while the message goes out."""
    seen: dict[str, str] = {}
    attributes = messaging("publish", "subreq.events", "request.approved", "e-1")

    def publish() -> None:
        with producer_span("publish subreq.events", INCOMING, attributes) as headers:
            seen.update(headers)
            raise ConnectionError("broker gone")

    with pytest.raises(ConnectionError, match="broker gone"):
        publish()
    return seen


def test_a_failed_publish_is_recorded_as_the_sdk_records_it(restore_provider: None) -> None:
    """The worker's publish spans skip the span object: the same span comes out, error
    status and exception event included, and the headers name it."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _install(provider)
    sdk_headers = failed_publish()
    recorded: list[Flat] = []
    _install(LeanTracerProvider(recorded.append))
    lean_headers = failed_publish()
    resource = Resource.create({})
    lean = [rebuild(flat, resource) for flat in recorded]
    sdk = list(exporter.get_finished_spans())
    assert shape(lean) == shape(sdk)
    (span,) = lean
    assert span.status.status_code is StatusCode.ERROR
    assert span.events[0].attributes is not None
    assert span.events[0].attributes["exception.type"] == "ConnectionError"
    assert span.parent is not None
    assert span.parent.is_remote
    trace_id, span_id = lean_headers["traceparent"].split("-")[1:3]
    assert trace_id == INCOMING.split("-")[1] == sdk_headers["traceparent"].split("-")[1]
    assert span.context is not None
    assert f"{span.context.span_id:016x}" == span_id


def test_a_publish_after_an_unsampled_or_stateful_context_takes_the_ordinary_path(
    restore_provider: None,
) -> None:
    recorded: list[Flat] = []
    _install(LeanTracerProvider(recorded.append))
    with producer_span("publish", UNSAMPLED, {}) as headers:
        assert headers["traceparent"].endswith("-00")  # followed, not recorded
    assert recorded == []
    parent = carried({"traceparent": INCOMING, "tracestate": "v=1"})
    with tracer().start_as_current_span("process", context=parent):
        stored = headers_of()
    assert stored["tracestate"] == "v=1"
    with producer_span("publish", stored["traceparent"], {}) as headers:
        assert headers["traceparent"].split("-")[1] == INCOMING.split("-")[1]


def test_an_unsampled_parent_is_followed_and_nothing_is_recorded(restore_provider: None) -> None:
    recorded: list[Flat] = []
    _install(LeanTracerProvider(recorded.append))
    with tracer().start_as_current_span("process", context=carried({"traceparent": UNSAMPLED})):
        assert headers_of()["traceparent"].endswith("-00")
    assert recorded == []


@pytest.mark.parametrize(
    ("sampler", "expected"),
    [(ALWAYS_OFF, 0), (TraceIdRatioBased(0.0), 0), (TraceIdRatioBased(1.0), 4)],
)
def test_the_sdk_sampler_decides_as_it_does_in_the_sdk(
    restore_provider: None, sampler: Sampler, expected: int
) -> None:
    sdk, _ = sdk_spans(sampler)
    lean, _ = lean_spans(sampler)
    assert len(lean) == len(sdk) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER='sometimes'"),
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"},
            "OTEL_TRACES_SAMPLER_ARG='half'",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
            "OTEL_TRACES_SAMPLER_ARG='2'",
        ),
    ],
)
def test_a_bad_sampler_setting_is_refused_naming_the_variable(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        tracing.sampler(environ)


def test_the_default_sampler_is_parent_based_always_on() -> None:
    assert tracing.sampler({}) is DEFAULT_ON


def flat(name: str = "s") -> Flat:
    return (name, 1, 2, 1, (), None, 0, 1, 2, {}, (), (), 0, None)


def test_a_bad_batch_setting_is_refused_naming_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="OTEL_BSP_MAX_QUEUE_SIZE='lots'"):
        SpanShipper({}, {"OTEL_BSP_MAX_QUEUE_SIZE": "lots"})


def test_a_full_queue_drops_new_spans_and_counts_them(caplog: pytest.LogCaptureFixture) -> None:
    started = threading.Event()
    release = threading.Event()

    def stuck() -> subprocess.Popen[bytes]:
        started.set()
        release.wait(10)
        return subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.stdin.buffer.read()"], stdin=subprocess.PIPE
        )

    environ = {"OTEL_BSP_MAX_QUEUE_SIZE": "3", "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    shipper = SpanShipper({}, environ, spawn=stuck)
    for i in range(3):
        shipper.record(flat(f"s{i}"))  # the third wakes the thread, which takes them ...
    assert started.wait(10)  # ... and blocks starting the export process
    with caplog.at_level(logging.WARNING, "consumers.span_shipping"):
        for i in range(3, 8):  # three fill the queue again, two find it full
            shipper.record(flat(f"s{i}"))
    assert shipper.dropped == 2
    assert "span queue full" in caplog.text
    release.set()
    shipper.shutdown()


def test_a_dead_export_process_is_started_again_for_the_next_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    processes: list[subprocess.Popen[bytes]] = []

    def spawn() -> subprocess.Popen[bytes]:
        # the first one dies at once; the next ones read until stdin closes
        code = "pass" if not processes else "import sys; sys.stdin.buffer.read()"
        process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
        if not processes:
            process.wait()
        processes.append(process)
        return process

    shipper = SpanShipper({}, {"OTEL_BSP_SCHEDULE_DELAY": "60000"}, spawn=spawn)
    with caplog.at_level(logging.WARNING, "consumers.span_shipping"):
        shipper.record(flat())
        assert shipper.force_flush()
        shipper.record(flat())
        assert shipper.force_flush()
    shipper.shutdown()
    assert shipper.starts == 2
    assert shipper.dropped == 1  # the batch written to the dead one, counted
    assert "span export process failed" in caplog.text
    assert processes[-1].returncode == 0  # ended by its stdin closing


def test_spans_reach_the_otlp_endpoint_through_the_export_process_by_shutdown(
    restore_provider: None,
) -> None:
    with otlp_sink(keep=True) as receiver, pytest.MonkeyPatch.context() as patch:
        environ = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "subreq-unit",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64",
        }
        for name, value in environ.items():  # the export process reads os.environ
            patch.setenv(name, value)
        assert tracing.configure(environ)
        for _ in range(100):
            scenario()
        tracing.shutdown()  # ships what is queued; the export process sends it and ends
        spans = receiver.kept_spans()
        assert receiver.services() == {"subreq-unit"}
    assert len(spans) == 400
    by_id = {span.span_id: span for span in spans}
    transactions = [s for s in spans if s.name == "transaction"]
    assert len(transactions) == 100
    assert all(by_id[s.parent_span_id].name == "process request.submit" for s in transactions)
    assert all(s.trace_id.hex() == INCOMING.split("-")[1] for s in transactions)


def test_traceparents_read_again_come_from_a_bounded_cache() -> None:
    from workflow import telemetry

    first = carried({"traceparent": INCOMING})
    assert carried({"traceparent": INCOMING}) is first  # read once, then looked up
    assert link_from(INCOMING) is not None
    for n in range(telemetry._READ_MAX + 10):
        carried({"traceparent": f"00-{n + 1:032x}-{n + 1:016x}-01"})
    assert len(telemetry._READ) <= telemetry._READ_MAX
    malformed = carried({"traceparent": "00-not-a-trace-01"})
    assert not trace.get_current_span(malformed).get_span_context().is_valid  # a new trace


def test_the_export_process_yields_the_cpu_to_the_work() -> None:
    """It runs niced, so on a busy machine exporting takes what the worker leaves."""
    import os

    from consumers.span_export import NICENESS

    with otlp_sink() as receiver, pytest.MonkeyPatch.context() as patch:
        patch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
        shipper = SpanShipper({}, {"OTEL_BSP_SCHEDULE_DELAY": "60000"})
        shipper.record(flat())
        assert shipper.force_flush()
        process = shipper._process
        assert process is not None
        deadline = time.monotonic() + 10
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        while os.getpriority(os.PRIO_PROCESS, process.pid) == ours:  # until it has started
            assert time.monotonic() < deadline, "the export process never reniced itself"
            time.sleep(0.01)
        assert os.getpriority(os.PRIO_PROCESS, process.pid) == min(19, ours + NICENESS)
        shipper.shutdown()
        assert receiver.spans == 1
