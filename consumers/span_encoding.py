"""Flattened spans (``consumers.span_shipping.Flat``) written straight to OTLP's protobuf
bytes: an ``ExportTraceServiceRequest``, as the SDK's exporter would post it.

The SDK's way, each span rebuilt as a ``ReadableSpan`` and encoded through the protobuf
message classes, took the export process about 30 us a span, most of the CPU tracing cost
on a two-core machine where the worker, the broker and the database share the cores. These
few field writers, with whole attribute fields cached, take about 6.5 us (8,155 spans of a
traced benchmark worker, encoded again: 17.9 us before that cache; protobuf's own message
classes take 27 us); the tests check that the bytes parse to the message the SDK's encoder
makes from the same spans.

Field numbers are those of ``opentelemetry/proto/trace/v1/trace.proto`` and
``common/v1/common.proto``. An attribute whose value OTLP cannot carry is left out and
logged, as the SDK's encoder does.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from consumers.span_shipping import Flat

log = logging.getLogger(__name__)

_FIXED64 = struct.Struct("<Q").pack
_FIXED32 = struct.Struct("<I").pack
_DOUBLE = struct.Struct("<d").pack

HAS_IS_REMOTE = 0x100
"""SpanFlags: the parent's (or a link's) remoteness is known..."""
IS_REMOTE = 0x300
"""...and it is remote."""

CACHED_PAIRS = 4096
"""Encoded attribute fields kept: names, systems and destinations repeat from span
to span; message ids, never kept once the cache is full, do not."""


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 two's complement, ten bytes
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SHORT = tuple(bytes((n,)) for n in range(0x80))
"""The one-byte varints: the length of most fields of a span."""


def _field(key: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its key byte(s), the payload's length, the payload."""
    n = len(payload)
    return key + (_SHORT[n] if n < 0x80 else _varint(n)) + payload


def _value(value: Any) -> bytes:
    """An ``AnyValue``'s fields (the order of the SDK's ``_encode_value``)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _field(b"\x0a", value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _value(v)) for v in value))
    if isinstance(value, Mapping):
        pairs = b"".join(_field(b"\x0a", _pair(str(k), v)) for k, v in value.items())
        return _field(b"\x32", pairs)
    raise TypeError(f"invalid type {type(value).__name__} of value {value!r}")


_KEYS: dict[str, bytes] = {}
_FIELDS: dict[tuple[bytes, str, type, Any], bytes] = {}
"""Whole encoded attribute fields: (field key, name, value's type, value) -> bytes (the type
too: True == 1 == 1.0 as keys)."""


def _pair(key: str, value: Any) -> bytes:
    """A ``KeyValue``'s fields."""
    prefix = _KEYS.get(key)
    if prefix is None:
        prefix = _KEYS[key] = _field(b"\x0a", key.encode())
    return prefix + _field(b"\x12", _value(value))


def _attributes(key: bytes, attributes: Mapping[str, Any] | None) -> bytes:
    """Each attribute as a repeated ``KeyValue`` field ``key``; those of a scalar value
    from the cache (bool is an int; sequences are not kept)."""
    if not attributes:
        return b""
    out = []
    for name, value in attributes.items():
        if isinstance(value, str | int | float):
            cached = (key, name, type(value), value)
            found = _FIELDS.get(cached)
            if found is None:
                found = _field(key, _pair(name, value))
                if len(_FIELDS) < CACHED_PAIRS:
                    _FIELDS[cached] = found
            out.append(found)
            continue
        try:
            out.append(_field(key, _pair(name, value)))
        except TypeError as exc:
            log.warning("span attribute %s left out: %s", name, exc)
    return b"".join(out)


_NO_STATUS = b"\x7a\x00"


def _span(flat: Flat) -> bytes:
    (
        name,
        trace_id,
        span_id,
        _flags,
        trace_state,
        parent,
        kind,
        start,
        end,
        attributes,
        links,
        events,
        status_code,
        status_description,
    ) = flat  # FlatSpan's fields, unpacked without building one
    parts = [b"\x0a\x10" + trace_id.to_bytes(16, "big") + b"\x12\x08" + span_id.to_bytes(8, "big")]
    if trace_state:
        parts.append(_field(b"\x1a", ",".join(f"{k}={v}" for k, v in trace_state).encode()))
    if parent is not None:
        parts += (b"\x22\x08", parent[0].to_bytes(8, "big"))
    if name:
        parts.append(_field(b"\x2a", name.encode()))
    # The SDK's SpanKind counts from 0, OTLP's from 1.
    parts += (b"\x30", _SHORT[kind + 1], b"\x39", _FIXED64(start), b"\x41", _FIXED64(end))
    if attributes:
        parts.append(_attributes(b"\x4a", attributes))
    for event_name, at, event_attributes in events:
        body = b"\x09" + _FIXED64(at)
        if event_name:
            body += _field(b"\x12", event_name.encode())
        parts.append(_field(b"\x5a", body + _attributes(b"\x1a", event_attributes)))
    for link_trace, link_span, _link_flags, remote, link_attributes in links:
        body = b"\x0a\x10" + link_trace.to_bytes(16, "big") + b"\x12\x08"
        body += link_span.to_bytes(8, "big") + _attributes(b"\x22", link_attributes)
        body += b"\x35" + _FIXED32(IS_REMOTE if remote else HAS_IS_REMOTE)
        parts.append(_field(b"\x6a", body))
    if status_code or status_description:
        status = _field(b"\x12", status_description.encode()) if status_description else b""
        if status_code:
            status += b"\x18" + _varint(status_code)
        parts.append(_field(b"\x7a", status))
    else:
        parts.append(_NO_STATUS)
    remote_parent = parent is not None and parent[1]
    parts += (b"\x85\x01", _FIXED32(IS_REMOTE if remote_parent else HAS_IS_REMOTE))
    return b"".join(parts)


class OtlpEncoder:
    """One resource and one instrumentation scope for every span, encoded once."""

    def __init__(
        self,
        resource: Mapping[str, Any],
        scope_name: str,
        scope_version: str | None = None,
        resource_schema_url: str = "",
    ) -> None:
        self._resource = _field(b"\x0a", _attributes(b"\x0a", resource))
        scope = _field(b"\x0a", scope_name.encode()) if scope_name else b""
        if scope_version:
            scope += _field(b"\x12", scope_version.encode())
        self._scope = _field(b"\x0a", scope)
        self._schema = _field(b"\x1a", resource_schema_url.encode()) if resource_schema_url else b""

    def request(self, spans: Iterable[Flat]) -> bytes:
        """The ``ExportTraceServiceRequest`` holding ``spans``."""
        body = b"".join(_field(b"\x12", _span(flat)) for flat in spans)
        scope_spans = _field(b"\x12", self._scope + body)
        return _field(b"\x0a", self._resource + scope_spans + self._schema)
