"""A real SMTP server (aiosmtpd) on a free 127.0.0.1 port, shared by the mail tests."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalSmtpServer:
    """Serves ``handler``; ``stop`` then ``start`` is an outage on the same port."""

    def __init__(self, handler: Any) -> None:
        self._handler = handler
        self.port = free_port()
        self._controller: Controller | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._controller = Controller(
            self._handler, hostname="127.0.0.1", port=self.port, loop=self._loop
        )
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._loop is not None:
            self._loop.close()
            self._loop = None
