"""pika's queued frames go out in a few socket writes, byte for byte in order, once the
workarounds of ``consumers.amqp.patches`` are applied (as the worker applies them)."""

from __future__ import annotations

import collections
import struct

import pika.data
import pytest
from pika.adapters.utils.io_services_utils import _AsyncPlaintextTransport

from consumers.amqp import patches
from consumers.amqp.errors import UnsupportedPika


@pytest.fixture(autouse=True)
def _coalescing() -> None:
    patches.apply()


class Socket:
    def __init__(self, accept: int | None = None) -> None:
        self.sent: list[bytes] = []
        self.accept = accept  # bytes taken per send(); None: all

    def send(self, data: bytes) -> int:
        taken = data if self.accept is None else data[: self.accept]
        self.sent.append(bytes(taken))
        return len(taken)


def transport(frames: list[bytes], sock: Socket) -> _AsyncPlaintextTransport:
    t = object.__new__(_AsyncPlaintextTransport)
    t._sock = sock
    t._tx_buffers = collections.deque(frames)
    t._tx_buffered_byte_count = sum(len(f) for f in frames)
    return t


def test_frames_of_many_messages_leave_in_one_write() -> None:
    frames = [f"frame-{i};".encode() for i in range(300)]
    sock = Socket()
    t = transport(frames, sock)
    t._produce()
    assert sock.sent == [b"".join(frames)]
    assert not t._tx_buffers
    assert t._tx_buffered_byte_count == 0


def test_writes_are_capped_and_a_partial_write_keeps_the_rest_in_order() -> None:
    big = [bytes([i % 251]) * (patches.COALESCE_BYTES // 2) for i in range(5)]
    sock = Socket()
    t = transport(big, sock)
    t._produce()
    assert b"".join(sock.sent) == b"".join(big)
    assert len(sock.sent) == 3  # two chunks reach the cap, the fifth goes alone
    assert all(len(s) <= patches.COALESCE_BYTES for s in sock.sent)

    frames = [b"abc", b"def", b"ghi"]
    sock = Socket(accept=4)  # the kernel takes 4 bytes at a time
    t = transport(frames, sock)
    t._produce()
    assert sock.sent == [b"abcd", b"efgh", b"i"]
    assert t._tx_buffered_byte_count == 0


def test_the_patches_refuse_a_pika_they_were_not_written_for() -> None:
    patches.check_version("1.4.4")
    for other in ("1.3.2", "1.5.0", "2.0.0", "unknown"):
        with pytest.raises(UnsupportedPika, match=f"pika {other} is installed"):
            patches.check_version(other)


def test_applying_twice_changes_nothing_more() -> None:
    decode = pika.data.decode_value
    patches.apply()
    assert pika.data.decode_value is decode


def test_a_header_timestamp_past_the_year_9999_stays_an_int() -> None:
    encoded = b"T" + struct.pack(">Q", 2**63)
    assert pika.data.decode_value(encoded, 0) == (2**63, 9)
