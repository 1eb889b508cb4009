"""Installing the OpenTelemetry SDK from the standard ``OTEL_*`` variables.

Nothing is installed unless a variable asks for export (``OTEL_TRACES_EXPORTER`` other
than ``none``, or an OTLP endpoint): then spans go through a batch processor to the OTLP
exporter over HTTP, whose endpoint, headers, service name (``OTEL_SERVICE_NAME``,
default ``subreq``) and sampler (``OTEL_TRACES_SAMPLER``) the SDK reads itself. The SDK
ships in the ``subreq[otel]`` extra (the worker image has it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from workflow.errors import ConfigurationError

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
    provider = TracerProvider(resource=resource)
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            raise ConfigurationError(
                "OTEL_* variables ask for OTLP export, but the exporter is not installed: "
                "pip install 'subreq[otel]'"
            ) from None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


def shutdown() -> None:
    """Flush what the batch processor still holds (a stopping worker's last spans)."""
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    close = getattr(provider, "shutdown", None)
    if callable(close):
        close()
