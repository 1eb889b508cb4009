"""Installing tracing from the standard ``OTEL_*`` variables.

Nothing is installed unless a variable asks for export (``OTEL_TRACES_EXPORTER`` other
than ``none``, or an OTLP endpoint). For OTLP, spans are recorded by ``consumers.spans`` and
shipped to an export process (``consumers.span_shipping``) that sends them with the SDK's
OTLP/HTTP exporter, which reads its endpoint, headers, timeout and compression itself; the
sampler is the SDK's (``OTEL_TRACES_SAMPLER`` / ``_ARG``, default ``parentbased_always_on``),
the service name ``OTEL_SERVICE_NAME`` (default ``subreq``). ``console`` uses the SDK
throughout, for a look at spans by hand. The SDK
ships in the ``subreq[otel]`` extra (the worker image has it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from workflow.errors import ConfigurationError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.sampling import Sampler

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces to be exported."""
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" or environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(exporter) or any(environ.get(name) for name in ENDPOINTS)


def configure(environ: Mapping[str, str] = os.environ) -> bool:
    """Install the SDK's tracer provider when the environment asks for it; whether it did.
    A request for tracing without the SDK installed is a ConfigurationError."""
    if not wanted(environ):
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter not in ("otlp", "console"):
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER={exporter!r} is not supported: use otlp, console or none"
        )
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise ConfigurationError(
            "OTEL_* variables ask for tracing, but the OpenTelemetry SDK is not installed: "
            "pip install 'subreq[otel]'"
        ) from None
    resource = Resource.create({"service.name": environ.get("OTEL_SERVICE_NAME") or "subreq"})
    chosen = sampler(environ)
    if exporter == "console":
        provider = TracerProvider(resource=resource, sampler=chosen)
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
        return True
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter  # noqa: F401
    except ImportError:
        raise ConfigurationError(
            "OTEL_* variables ask for OTLP export, but the exporter is not installed: "
            "pip install 'subreq[otel]'"
        ) from None
    from consumers.span_shipping import SpanShipper
    from consumers.spans import LeanTracerProvider

    shipper = SpanShipper(resource.attributes, environ)
    trace.set_tracer_provider(LeanTracerProvider(shipper.record, chosen, shipper.shutdown))
    return True


SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)


def sampler(environ: Mapping[str, str] = os.environ) -> Sampler:
    """The SDK's sampler ``OTEL_TRACES_SAMPLER`` (and ``_ARG``, a ratio) name; default
    ``parentbased_always_on``. A name or ratio the SDK would only warn about is refused."""
    from opentelemetry.sdk.trace import sampling

    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
    if name not in SAMPLERS:
        raise ConfigurationError(
            f"OTEL_TRACES_SAMPLER={name!r} is not supported: use one of {', '.join(SAMPLERS)}"
        )
    if name.endswith("traceidratio"):
        raw = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip() or "1.0"
        try:
            ratio = float(raw)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise ConfigurationError(
                f"OTEL_TRACES_SAMPLER_ARG={raw!r}: expected a ratio from 0 to 1"
            )
        if name == "traceidratio":
            return sampling.TraceIdRatioBased(ratio)
        return sampling.ParentBasedTraceIdRatio(ratio)
    return {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "parentbased_always_on": sampling.DEFAULT_ON,
        "parentbased_always_off": sampling.DEFAULT_OFF,
    }[name]


def shutdown() -> None:
    """Ship what is still queued and let the export process send it (a stopping worker's
    last spans)."""
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    close = getattr(provider, "shutdown", None)
    if callable(close):
        close()
