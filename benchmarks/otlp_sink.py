"""A local OTLP/HTTP endpoint: it accepts every trace export and counts the spans, so a
traced worker in the ``traced`` runs pays for recording and exporting its spans without a
collector on the machine; the tests keep what it received (``keep=True``) to look at.

The benchmark runs it as a process of its own (``python -m benchmarks.otlp_sink``, as a
collector would be): inside the load generator, parsing the exports took the interpreter
lock that the load generator's reply handling needs, and slowed the load, not the worker.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from benchmarks.procs import fresh_status, status_process
from benchmarks.smtp_sink import free_port


class Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, keep: bool = False, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.keep = keep
        self.received: list[ExportTraceServiceRequest] = []
        self.spans = 0
        self.exports = 0
        self.lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def kept_spans(self) -> list[Span]:
        with self.lock:
            requests = list(self.received)
        return [
            s
            for r in requests
            for rs in r.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        ]

    def services(self) -> set[str]:
        with self.lock:
            requests = list(self.received)
        return {
            attribute.value.string_value
            for request in requests
            for resource in request.resource_spans
            for attribute in resource.resource.attributes
            if attribute.key == "service.name"
        }


class _Handler(BaseHTTPRequestHandler):
    server: Sink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        with self.server.lock:
            self.server.spans += spans
            self.server.exports += 1
            if self.server.keep:
                self.server.received.append(request)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@contextmanager
def otlp_sink(keep: bool = False) -> Iterator[Sink]:
    sink = Sink(keep)
    thread = threading.Thread(target=sink.serve_forever, name="otlp-sink", daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        sink.shutdown()
        sink.server_close()
        thread.join(5)


STATUS_EVERY = 0.05  # seconds


class SinkProcess:
    """The sink as a child process: its endpoint and the spans it counted so far."""

    def __init__(self, port: int, status: Path, process: subprocess.Popen[bytes]) -> None:
        self.endpoint = f"http://127.0.0.1:{port}"
        self.status_path = status
        self.process = process

    @property
    def spans(self) -> int:
        """From a status the sink wrote after this call began."""
        found = fresh_status(self.status_path, self.process, "OTLP sink", STATUS_EVERY, 5.0)
        return int(found["spans"])


@contextmanager
def otlp_sink_process(folder: Path) -> Iterator[SinkProcess]:
    """A sink in a process of its own on a free port, stopped on exit."""
    port, status = free_port(), folder / "otlp-sink.json"
    argv = [sys.executable, "-m", "benchmarks.otlp_sink", "--port", str(port)]
    with status_process([*argv, "--status", str(status)], status, "OTLP sink") as process:
        yield SinkProcess(port, status, process)


def _write_status(path: Path, sink: Sink) -> None:
    scratch = path.with_suffix(".tmp")
    with sink.lock:
        status = {"spans": sink.spans, "exports": sink.exports, "at": time.time()}
    scratch.write_text(json.dumps(status))
    os.replace(scratch, path)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.otlp_sink")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--status", type=Path, required=True)
    args = parser.parse_args(argv)
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    sink = Sink(port=args.port)
    threading.Thread(target=sink.serve_forever, name="otlp-sink", daemon=True).start()
    _write_status(args.status, sink)
    while not stopped.wait(STATUS_EVERY):
        _write_status(args.status, sink)
    sink.shutdown()
    sink.server_close()


if __name__ == "__main__":
    main()
