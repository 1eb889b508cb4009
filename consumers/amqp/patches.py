"""Three workarounds for pika, applied by the composition root, never on import.

Both replace pika internals process-wide, so they are tied to the pika versions they
were written (and tested) for: ``apply`` refuses any other, rather than patch code it
has not seen. Applying twice is harmless.
"""

from __future__ import annotations

import functools
import struct
import threading
from collections.abc import Callable
from typing import Any

import pika
import pika.data
from pika.adapters.utils.io_services_utils import _AsyncTransportBase

from consumers.amqp.errors import UnsupportedPika

PIKA_SERIES = (1, 4)
"""The pika release series the workarounds were written for; pyproject allows only it."""

COALESCE_BYTES = 256 * 1024
"""The most bytes joined into one ``send()`` call."""

Decode = Callable[[bytes, int], tuple[Any, int]]
EncodeTable = Callable[[list[bytes], dict[str, Any] | None], int]
Produce = Callable[[Any], None]

KEYS_KEPT = 64
"""Header names whose encoding is kept (the trace headers, a few of an integrator's)."""

_lock = threading.Lock()
_applied = False


def apply() -> None:
    """Tolerate far-future header timestamps, encode string headers in one step and coalesce
    socket writes, once per process.

    Raises ``UnsupportedPika`` when the installed pika is not of ``PIKA_SERIES``.
    """
    global _applied
    with _lock:
        if _applied:
            return
        check_version(pika.__version__)
        pika.data.decode_value = _tolerant(pika.data.decode_value)
        pika.data.encode_table = _string_tables(pika.data.encode_table)
        _AsyncTransportBase._produce = _coalescing(_AsyncTransportBase._produce)  # type: ignore[method-assign]
        _applied = True


def check_version(version: str) -> None:
    """Raises ``UnsupportedPika`` unless ``version`` is of ``PIKA_SERIES``."""
    try:
        series = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        series = ()
    if series != PIKA_SERIES:
        wanted = ".".join(map(str, PIKA_SERIES))
        raise UnsupportedPika(
            f"pika {version} is installed, but consumers.amqp.patches was written for pika "
            f"{wanted}.x: install pika>={wanted},<{PIKA_SERIES[0]}.{PIKA_SERIES[1] + 1} "
            "(as pyproject.toml says), or check the patches against this version first"
        )


def _tolerant(decode_value: Decode) -> Decode:
    def tolerant_decode_value(encoded: bytes, offset: int) -> tuple[Any, int]:
        """pika turns a header timestamp into a datetime and raises on one past year 9999,
        which drops the connection on every delivery of that message: keep it an int."""
        if encoded[offset : offset + 1] == b"T":
            try:
                return decode_value(encoded, offset)
            except (OverflowError, ValueError, OSError):
                return struct.unpack_from(">Q", encoded, offset + 1)[0], offset + 9
        return decode_value(encoded, offset)

    return tolerant_decode_value


def _string_tables(encode_table: EncodeTable) -> EncodeTable:
    keys: dict[str, bytes] = {}

    def encode_string_table(pieces: list[bytes], table: dict[str, Any] | None) -> int:
        """A table of strings only (the ``traceparent`` every traced reply and event
        carries) in one piece: pika spends four calls and two ``struct.pack`` per entry,
        a fifth of what tracing adds to a busy worker. The bytes are pika's own; any other
        table, or a name pika would refuse, goes to pika's encoder."""
        if not table or type(table) is not dict:
            return encode_table(pieces, table)
        parts: list[bytes] = []
        for key, value in table.items():
            name = keys.get(key) if type(key) is str else None
            if name is None:
                if type(key) is not str or len(encoded := key.encode()) > 255:
                    return encode_table(pieces, table)
                name = bytes((len(encoded),)) + encoded
                if len(keys) < KEYS_KEPT:
                    keys[key] = name
            if type(value) is not str:
                return encode_table(pieces, table)
            text = value.encode()
            parts += (name, b"S", len(text).to_bytes(4, "big"), text)
        body = b"".join(parts)
        pieces.append(len(body).to_bytes(4, "big"))
        pieces.append(body)
        return len(body) + 4

    # pika's own encoder stays reachable (``__wrapped__``), for the tests that compare bytes.
    return functools.update_wrapper(encode_string_table, encode_table, assigned=(), updated=())


def _coalescing(produce: Produce) -> Produce:
    def coalescing_produce(self: Any) -> None:
        """pika queues every frame as its own chunk and sends chunk by chunk: three
        ``send()`` calls per message (method, header, body), a tenth of a busy worker's
        time. Joining the queued chunks (up to ``COALESCE_BYTES`` at a time) sends a batch
        of replies or events in a few calls; the bytes and their order are unchanged."""
        chunks = self._tx_buffers
        if len(chunks) > 1:
            groups: list[bytes] = []
            group: list[bytes] = []
            size = 0
            for chunk in chunks:
                group.append(chunk)
                size += len(chunk)
                if size >= COALESCE_BYTES:
                    groups.append(b"".join(group))
                    group, size = [], 0
            if group:
                groups.append(b"".join(group))
            chunks.clear()
            chunks.extend(groups)
        produce(self)

    return coalescing_produce
