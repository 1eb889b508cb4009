"""A local OTLP/HTTP endpoint: it accepts every trace export and counts the spans, so a
traced worker in the ``traced`` runs pays for recording and exporting its spans without a
collector on the machine; the tests keep what it received (``keep=True``) to look at."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span


class Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, keep: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
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
