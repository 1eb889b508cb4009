"""``python -m benchmarks.smtp_sink``: an SMTP server that accepts every mail and counts it.

The end-to-end runs send every email here. It runs as its own process, so its CPU is
counted apart from the worker's and the load generator's. Every 20 ms it replaces a small
JSON status file: how many mails it accepted, and when (``time.time()``) the last one
arrived, which is where the end-to-end clock stops. ``--delay-ms`` answers each mail after
that long, as a remote relay would (sessions are served concurrently, so a sender keeping
several connections busy gets more through).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

STATUS_EVERY = 0.02  # seconds


class CountingHandler:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.accepted = 0
        self.last = 0.0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.accepted += 1  # one email, however many recipients
        self.last = time.time()
        return "250 2.0.0 accepted"


def _write_status(path: Path, handler: CountingHandler) -> None:
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps({"accepted": handler.accepted, "last": handler.last}))
    os.replace(scratch, path)


def serve(port: int, status: Path, delay: float) -> None:
    """Until SIGTERM or SIGINT."""
    handler = CountingHandler(delay)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    controller.start()
    try:
        _write_status(status, handler)
        while not stop.wait(STATUS_EVERY):
            _write_status(status, handler)
        _write_status(status, handler)
    finally:
        controller.stop()


@dataclass(frozen=True)
class SinkStatus:
    accepted: int
    last: float  # time.time() of the last accepted mail; 0 before the first


class SmtpSink:
    """The sink as a child process: its URL, its pid (for CPU), what it accepted so far."""

    def __init__(self, port: int, status: Path, process: subprocess.Popen[bytes]) -> None:
        self.url = f"smtp://127.0.0.1:{port}?timeout=30"
        self.status_path = status
        self.process = process

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def status(self) -> SinkStatus:
        if self.process.poll() is not None:
            raise RuntimeError(f"the SMTP sink exited with status {self.process.returncode}")
        try:
            found = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return SinkStatus(0, 0.0)
        return SinkStatus(int(found["accepted"]), float(found["last"]))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def smtp_sink(folder: Path, delay_ms: float = 0.0) -> Iterator[SmtpSink]:
    """A sink on a free port, stopped on exit; up once its first status is written."""
    port, status = free_port(), folder / "smtp-sink.json"
    argv = [sys.executable, "-m", "benchmarks.smtp_sink", "--port", str(port)]
    argv += ["--status", str(status), "--delay-ms", str(delay_ms)]
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not status.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the SMTP sink did not start")
            time.sleep(0.05)
        yield SmtpSink(port, status, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.smtp_sink", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--status", type=Path, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.delay_ms < 0:
        parser.error("--delay-ms must not be negative")
    serve(args.port, args.status, args.delay_ms / 1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
