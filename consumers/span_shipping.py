"""Finished spans shipped to an export process, so encoding and sending them costs the
worker next to nothing.

The SDK's ``BatchSpanProcessor`` encodes OTLP and posts it from a thread of the worker: with
every span exported, that thread took about as much of the worker's CPU (and of its GIL) as
recording the spans did. Here a finished span (one tuple, from ``consumers.spans``) is only
queued; a thread writes each batch down a pipe to ``python -m consumers.span_export``,
which rebuilds the spans and hands them to the SDK's own OTLP exporter (configured there by
the same ``OTEL_EXPORTER_OTLP_*`` variables it inherits).

Losing spans never stops work: a full queue (``OTEL_BSP_MAX_QUEUE_SIZE``) drops new spans, as
the SDK's processor does, and an export process that dies is started again for the next
batch; both are counted and logged once a minute at most.
"""

from __future__ import annotations

import logging
import marshal
import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, NamedTuple

from workflow.errors import ConfigurationError

log = logging.getLogger(__name__)

FRAME = struct.Struct(">I")
"""Each frame on the pipe: its length, then a list of flattened spans (the first frame
holds the resource's attributes instead), as :func:`payload` writes it."""

MARSHALLED, PICKLED = b"M", b"P"


def payload(value: Any) -> bytes:
    """``value`` as ``marshal`` writes it (the export process is the same interpreter),
    which takes under half of pickle's time for these tuples of plain values; pickled
    where a value is of a type marshal refuses (a ``str`` subclass as an attribute, say)."""
    try:
        return MARSHALLED + marshal.dumps(value)
    except ValueError:
        return PICKLED + pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def loaded(data: bytes) -> Any:
    """What :func:`payload` wrote."""
    if data[:1] == MARSHALLED:
        return marshal.loads(data[1:])
    return pickle.loads(data[1:])


def frame(value: Any) -> bytes:
    """One frame on the pipe: the length of the payload, then the payload."""
    data = payload(value)
    return FRAME.pack(len(data)) + data


Flat = tuple[Any, ...]
"""A finished span as plain values, in the order of :class:`FlatSpan`'s fields (a plain
tuple pickles smaller and faster than the named one)."""


class FlatSpan(NamedTuple):
    """The fields of a :data:`Flat` span, named for its readers: ``FlatSpan._make(flat)``."""

    name: str
    trace_id: int
    span_id: int
    flags: int
    trace_state: Sequence[tuple[str, str]]
    parent: tuple[int, bool] | None  # (parent span id, the parent is remote)
    kind: int  # the SDK's SpanKind value
    start: int
    end: int
    attributes: Mapping[str, Any]
    links: Sequence[tuple[int, int, int, bool, Mapping[str, Any]]]  # trace, span, flags, remote
    events: Sequence[tuple[str, int, Mapping[str, Any]]]  # name, time, attributes
    status_code: int
    status_description: str | None


def _positive(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigurationError(f"{name}={raw!r}: expected a positive whole number")
    return value


def export_command() -> list[str]:
    return [sys.executable, "-m", "consumers.span_export"]


class SpanShipper:
    """Queues finished spans; one thread writes them in batches to the export process's
    stdin. ``spawn`` starts that process (a test may give its own)."""

    def __init__(
        self,
        resource: Mapping[str, Any],
        environ: Mapping[str, str] = os.environ,
        spawn: Callable[[], subprocess.Popen[bytes]] | None = None,
    ) -> None:
        self.max_queue = _positive(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 2048)
        self.batch_size = min(
            self.max_queue, _positive(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)
        )
        self.delay = _positive(environ, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
        self._resource = dict(resource)
        self._spawn = spawn or (lambda: subprocess.Popen(export_command(), stdin=subprocess.PIPE))
        self._queue: deque[Flat] = deque()
        self._wake = threading.Event()
        self._flushed = threading.Condition()
        self._flush_asked = 0
        self._flush_done = 0
        self._stopping = False
        self._process: subprocess.Popen[bytes] | None = None
        self.dropped = 0  # spans not exported: queue full or the export process gone
        self.starts = 0  # export processes started: more than one means one died
        self._last_warning = 0.0
        self._thread = threading.Thread(target=self._run, name="span-shipper", daemon=True)
        self._thread.start()

    def record(self, span: Flat) -> None:
        """Called as each span ends, on the thread that ends it: nothing but a queue append."""
        if self._stopping:
            return
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            self._warn("span queue full (OTEL_BSP_MAX_QUEUE_SIZE)")
            return
        self._queue.append(span)
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Every span queued so far written to the export process."""
        with self._flushed:
            self._flush_asked += 1
            wanted = self._flush_asked
            self._wake.set()
            return self._flushed.wait_for(
                lambda: self._flush_done >= wanted or not self._thread.is_alive(),
                timeout_millis / 1000,
            )

    def shutdown(self) -> None:
        """Write what is queued, then let the export process send it and end."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)
        process = self._process
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
            process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.delay)
            self._wake.clear()
            with self._flushed:
                asked = self._flush_asked
            while self._queue:
                batch = [
                    self._queue.popleft() for _ in range(min(len(self._queue), self.batch_size))
                ]
                self._ship(batch)
            with self._flushed:
                self._flush_done = asked
                self._flushed.notify_all()
            if self._stopping:
                return

    def _ship(self, batch: Sequence[Flat]) -> None:
        try:
            data = frame(batch)
        except Exception as exc:  # a value neither marshal nor pickle can write
            self.dropped += len(batch)
            self._warn(f"span batch cannot be written ({exc!r}); dropped")
            return
        try:
            stdin = self._pipe()
            stdin.write(data)
            stdin.flush()
        except (OSError, ValueError) as exc:  # the export process is gone
            self.dropped += len(batch)
            self._warn(f"span export process failed ({exc!r}); starting it again")
            self._discard()

    def _pipe(self) -> IO[bytes]:
        process = self._process
        if process is not None and process.poll() is not None:
            self._discard()
            process = None
        if process is None:
            process = self._spawn()
            if process.stdin is None:
                raise OSError("the span export process has no stdin")
            process.stdin.write(frame(self._resource))
            self.starts += 1
            self._process = process
        assert process.stdin is not None
        return process.stdin

    def _discard(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        if process.poll() is None:
            process.kill()
        process.wait()

    def _warn(self, what: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 60:
            self._last_warning = now
            log.warning("%s: %d spans dropped so far", what, self.dropped)
