"""Random (version 4) UUIDs as text, for request, event and notification ids.

``uuid.uuid4()`` asks the kernel for 16 bytes each time and builds a ``UUID`` object only
to print it; a command makes four or five ids. Here each thread reads random bytes from
the same source (``os.urandom``) 4 KiB at a time and formats them directly: the same
kind of id, a fraction of the cost.
"""

from __future__ import annotations

import os
import threading

_BATCH = 256  # ids per read of os.urandom


class _Pool(threading.local):
    def __init__(self) -> None:
        self.data = b""
        self.offset = 0


_pool = _Pool()


def new_id() -> str:
    """A random UUID (version 4, RFC 4122 variant), e.g. ``'0b9a5f2e-...'``."""
    pool = _pool
    if pool.offset >= len(pool.data):
        pool.data, pool.offset = os.urandom(16 * _BATCH), 0
    raw = bytearray(pool.data[pool.offset : pool.offset + 16])
    pool.offset += 16
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
