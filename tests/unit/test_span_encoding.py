"""The export process's OTLP encoder writes the request the SDK's encoder makes from the
same spans (rebuilt as ``ReadableSpan``): compared as parsed protobuf messages."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource

from consumers.span_encoding import CACHED_PAIRS, OtlpEncoder
from consumers.span_export import SCOPE, _Resource, encoded_post, export_all, rebuild
from consumers.span_shipping import Flat, FlatSpan
from consumers.spans import LeanTracerProvider
from tests.unit.test_spans import DEFAULT_ON, _install, restore_provider, scenario

__all__ = ["restore_provider"]  # the fixture, shared with test_spans

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736


def sdk_request(flats: Sequence[Flat], resource: Resource) -> ExportTraceServiceRequest:
    return encode_spans([rebuild(flat, resource) for flat in flats])


def ours(flats: Sequence[Flat], resource: Resource) -> ExportTraceServiceRequest:
    encoder = OtlpEncoder(resource.attributes, SCOPE.name, SCOPE.version, resource.schema_url)
    return ExportTraceServiceRequest.FromString(encoder.request(flats))


def span(name: str = "s", **fields: Any) -> Flat:
    values: dict[str, Any] = {
        "name": name,
        "trace_id": TRACE,
        "span_id": 0x00F067AA0BA902B7,
        "flags": 1,
        "trace_state": (),
        "parent": None,
        "kind": 0,
        "start": 1_700_000_000_000_000_001,
        "end": 1_700_000_000_123_456_789,
        "attributes": {},
        "links": (),
        "events": (),
        "status_code": 0,
        "status_description": None,
    }
    values.update(fields)
    return tuple(values.values())


@pytest.fixture
def resource() -> Resource:
    return _Resource(Resource.create({"service.name": "subreq-unit", "host.cores": 2}))


def test_the_worker_s_spans_encode_as_the_sdk_encodes_them(
    resource: Resource, restore_provider: None
) -> None:
    recorded: list[Flat] = []
    _install(LeanTracerProvider(recorded.append, DEFAULT_ON))
    for _ in range(3):
        scenario()
    assert len(recorded) == 12
    assert ours(recorded, resource) == sdk_request(recorded, resource)


@pytest.mark.parametrize(
    "flat",
    [
        span(kind=4, parent=(0x1122334455667788, True), trace_state=(("v", "1"), ("x", "y"))),
        span(kind=2, parent=(0x1122334455667788, False), status_code=2, status_description="boom"),
        span(
            attributes={
                "text": "é and ✓",
                "yes": True,
                "no": False,
                "zero": 0,
                "negative": -42,
                "big": 2**63 - 1,
                "ratio": 0.25,
                "raw": b"\x00\x01",
                "names": ["a", "b"],
                "counts": (1, 2, 3),
                "flags": [True, False],
                "empty": [],
                "nested": {"k": "v", "n": 1},
                "nothing": None,
            }
        ),
        span(
            events=(("preloaded", 5, {"accounts": 3}), ("", 6, {})),
            links=((TRACE, 7, 1, True, {"messaging.message.id": "m-1"}), (3, 4, 0, False, {})),
        ),
        span(name="", kind=3, status_code=1),
    ],
    ids=["remote-parent", "error", "attributes", "events-links", "unnamed-ok"],
)
def test_every_field_encodes_as_the_sdk_encodes_it(flat: Flat, resource: Resource) -> None:
    assert ours([flat], resource) == sdk_request([flat], resource)


def test_an_attribute_otlp_cannot_carry_is_left_out_as_the_sdk_leaves_it_out(
    resource: Resource, caplog: pytest.LogCaptureFixture
) -> None:
    flat = span(attributes={"ok": "kept", "odd": object()})
    with caplog.at_level(logging.WARNING):
        encoded = ours([flat], resource)
    assert encoded == sdk_request([flat], resource)
    keys = [kv.key for kv in encoded.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert keys == ["ok"]
    assert "span attribute odd left out" in caplog.text


def test_cached_attributes_keep_their_types_and_the_cache_stays_bounded(
    resource: Resource,
) -> None:
    flats = [span(attributes={"v": v}) for v in (1, True, 1.0, "1")]
    assert ours(flats, resource) == sdk_request(flats, resource)
    many = [span(attributes={"messaging.message.id": f"m-{n}"}) for n in range(CACHED_PAIRS + 50)]
    assert ours(many, resource) == sdk_request(many, resource)
    from consumers import span_encoding

    assert len(span_encoding._FIELDS) <= CACHED_PAIRS


class _Result:
    def __init__(self, success: bool) -> None:
        self.success = success


class _Client:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def export(self, data: bytes) -> _Result:
        self.sent.append(data)
        return _Result(True)


class _Exporter:
    """Shaped as the SDK's OTLPSpanExporter: its HTTP client and size limit."""

    def __init__(self, limit: int = 0) -> None:
        self._client = _Client()
        self._max_request_size = limit
        self.exported: list[Any] = []
        self.ended = False

    def export(self, spans: Any) -> None:
        self.exported.append(spans)

    def shutdown(self) -> None:
        self.ended = True


def _frames(*batches: Sequence[Flat]) -> Any:
    import io

    from consumers.span_shipping import frame

    out = io.BytesIO()
    for value in ({"service.name": "subreq-unit"}, *batches):
        out.write(frame(value))
    out.seek(0)
    return out


def test_the_export_process_posts_encoded_batches_through_the_exporter_s_client() -> None:
    exporter = _Exporter()
    read = export_all(_frames([span("a"), span("b")], [span("c")]), exporter)  # type: ignore[arg-type]
    assert read == 3
    assert exporter.exported == []  # the SDK's ReadableSpan path not taken
    assert exporter.ended
    sent = [ExportTraceServiceRequest.FromString(data) for data in exporter._client.sent]
    names = [[s.name for s in r.resource_spans[0].scope_spans[0].spans] for r in sent]
    assert names == [["a", "b"], ["c"]]
    attrs = {kv.key: kv.value.string_value for kv in sent[0].resource_spans[0].resource.attributes}
    assert attrs["service.name"] == "subreq-unit"


def test_a_batch_over_the_exporter_s_size_limit_is_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter = _Exporter(limit=10)
    post = encoded_post(exporter)  # type: ignore[arg-type]
    assert post is not None
    with caplog.at_level(logging.WARNING, "consumers.span_export"):
        assert post(b"x" * 11) is False
        assert post(b"x" * 10) is True
    assert exporter._client.sent == [b"x" * 10]
    assert "dropping a span batch of 11 bytes" in caplog.text


def test_an_exporter_without_that_client_gets_the_sdk_s_spans() -> None:
    exporter = _Exporter()
    del exporter._client
    assert export_all(_frames([span("a")]), exporter) == 1  # type: ignore[arg-type]
    assert [[s.name for s in batch] for batch in exporter.exported] == [["a"]]


class _Name(str):
    """A ``str`` subclass, which marshal refuses."""


def test_span_batches_cross_the_pipe_marshalled_and_pickled_where_marshal_refuses() -> None:
    from consumers.span_shipping import MARSHALLED, PICKLED, loaded, payload

    attributes = {"n": 1, "ok": True, "x": 0.5, "tags": ["p", "q"]}
    plain = [span("a"), span("b", attributes=attributes, parent=(7, True))]
    data = payload(plain)
    assert data[:1] == MARSHALLED
    assert loaded(data) == plain
    odd = [span("c", attributes={"name": _Name("kept")})]
    data = payload(odd)
    assert data[:1] == PICKLED
    (back,) = loaded(data)
    assert FlatSpan._make(back).attributes == {"name": "kept"}
