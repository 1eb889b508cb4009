"""Logging set-up: readable lines, or one JSON object per line (``SUBREQ_LOG_FORMAT=json``).

Records carry ids only (command, message_id, correlation_id, account_id,
request_id): never message bodies, names or email addresses.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace

CONTEXT = (
    "command",
    "message_id",
    "correlation_id",
    "account_id",
    "request_id",
    "outcome",
    "batch",
    "duration_ms",
    "error",
    "trace_id",
    "span_id",
)


class TraceIds(logging.Filter):
    """Adds the active span's ``trace_id`` and ``span_id`` to a record, when one records,
    so a log line can be found from its trace and the other way round."""

    def filter(self, record: logging.LogRecord) -> bool:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """Readable lines with the ids appended as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(
            f"{key}={record.__dict__[key]}" for key in CONTEXT if record.__dict__.get(key)
        )
        return f"{line} [{extra}]" if extra else line


def configure(log_format: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(TraceIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("transitions", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pika logs every failed reconnect with a traceback; our loops say it in one line.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
