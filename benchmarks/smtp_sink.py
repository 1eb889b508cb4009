"""``python -m benchmarks.smtp_sink``: an SMTP server that accepts every mail and counts it.

The end-to-end runs and the notifier benchmark send every email here. It runs as its own
process, so its CPU is counted apart from the worker's and the load generator's, and speaks
just enough SMTP (pipelining included) to cost little of it. Every 20 ms it replaces a small
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
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import fresh_status, status_process

STATUS_EVERY = 0.02  # seconds


GREETING = b"220 sink ESMTP\r\n"
EHLO = b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"


class Sink:
    """Just enough SMTP for a client that pipelines (RFC 2920): it reads commands and mail
    data without parsing them, so the benchmark measures the sender, not the server."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.accepted = 0
        self.last = 0.0

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(GREETING)
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(EHLO)
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    await reader.readuntil(b"\r\n.\r\n")
                    if self.delay:
                        await asyncio.sleep(self.delay)
                    self.accepted += 1  # one email, however many recipients
                    self.last = time.time()
                    writer.write(b"250 2.0.0 accepted\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:  # MAIL, RCPT, RSET, NOOP
                    writer.write(b"250 OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the sink is stopping
        finally:
            writer.close()


def _write_status(path: Path, sink: Sink) -> None:
    scratch = path.with_suffix(".tmp")
    status = {"accepted": sink.accepted, "last": sink.last}
    # Its own CPU, at the resolution of process_time(): a short run's share of /proc's
    # 10 ms ticks can be nothing at all.
    status.update(cpu=time.process_time(), at=time.time())
    scratch.write_text(json.dumps(status))
    os.replace(scratch, path)


async def _serve(port: int, status: Path, delay: float) -> None:
    sink = Sink(delay)
    server = await asyncio.start_server(sink.session, "127.0.0.1", port, backlog=128)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    async with server:
        _write_status(status, sink)
        while not stopped.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), STATUS_EVERY)
            _write_status(status, sink)


def serve(port: int, status: Path, delay: float) -> None:
    """Until SIGTERM or SIGINT."""
    asyncio.run(_serve(port, status, delay))


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

    def cpu_seconds(self, timeout: float = 2.0) -> float:
        """The sink's CPU so far, from a status it wrote after this call began."""
        found = fresh_status(self.status_path, self.process, "SMTP sink", STATUS_EVERY, timeout)
        return float(found["cpu"])

    def _read(self) -> dict[str, float] | None:
        if self.process.poll() is not None:
            raise RuntimeError(f"the SMTP sink exited with status {self.process.returncode}")
        try:
            found = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def status(self) -> SinkStatus:
        found = self._read()
        if found is None:
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
    with status_process(argv, status, "SMTP sink") as process:
        yield SmtpSink(port, status, process)


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
