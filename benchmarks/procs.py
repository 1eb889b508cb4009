"""The process under test (``subreq worker`` or the ceiling) and what /proc says about it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_TIMEOUT = 30.0  # seconds for a clean SIGTERM stop before SIGKILL


class WorkerDied(RuntimeError):
    """The process under test exited while the benchmark still needed it."""


@dataclass(frozen=True)
class ProcSample:
    cpu_seconds: float  # user + system, all threads, and its live child processes' too
    rss_mib: float  # VmRSS now
    peak_rss_mib: float  # VmHWM: the high-water mark since start


def _stat(pid: int | str) -> list[str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; [0] is the state


def _children_cpu_ticks(pid: int) -> int:
    """CPU of the live child processes (the traced worker's span export process)."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = _stat(entry.name)
            if int(fields[1]) == pid:
                ticks += int(fields[11]) + int(fields[12])
    return ticks


def sample(pid: int) -> ProcSample:
    fields = _stat(pid)
    utime, stime = int(fields[11]), int(fields[12])
    utime += _children_cpu_ticks(pid)
    status: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            status[key] = int(value.split()[0]) / 1024  # kB -> MiB
    return ProcSample(
        (utime + stime) / CLOCK_TICKS, status.get("VmRSS", 0.0), status.get("VmHWM", 0.0)
    )


def broker_pid() -> int | None:
    """The RabbitMQ server's Erlang VM on this machine, if there is one (``rabbitmqctl``
    runs in a VM of its own, which is not it)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"beam.smp") and b"rabbit" in argv and b"boot" in argv:
            return int(entry.name)
    return None


def host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from the first line of /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return total - idle, total


def host_busy_percent(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy, total = after[0] - before[0], after[1] - before[1]
    return 100.0 * busy / total if total else 0.0


class _StoppedOnExit:
    """``stop()`` on leaving the ``with`` block, whatever happened."""

    def stop(self) -> object:
        raise NotImplementedError

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()


class WorkerProcess(_StoppedOnExit):
    """Started on enter, stopped (SIGTERM, then SIGKILL) on exit, whatever happened."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        cwd: Path | None = None,
        label: str = "worker",
    ) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.label = label
        self._log: IO[bytes] | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> WorkerProcess:
        self._log = self.log_path.open("wb")
        self._process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches the benchmark, which stops it cleanly
        )
        return self

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError(f"the {self.label} was not started")
        return self._process.pid

    def check(self) -> None:
        """Raise :class:`WorkerDied`, with the end of its log, if it is gone."""
        if self._process is None:
            raise RuntimeError(f"the {self.label} was not started")
        code = self._process.poll()
        if code is not None:
            raise WorkerDied(
                f"the {self.label} exited with status {code}; the end of its log:\n{self.tail()}"
            )

    def sample(self) -> ProcSample:
        self.check()
        return sample(self.pid)

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def stop(self) -> int | None:
        """SIGTERM (the worker finishes the batch in hand), SIGKILL after a while."""
        process, self._process = self._process, None
        try:
            if process is None:
                return None
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    process.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            return process.returncode
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None


class WorkerGroup(_StoppedOnExit):
    """Several worker processes of one run, started and stopped together: CPU is their sum,
    memory the largest one's, and any one of them dying stops the run."""

    def __init__(self, workers: Sequence[WorkerProcess]) -> None:
        if not workers:
            raise ValueError("a run needs at least one worker")
        self.workers = list(workers)

    def __enter__(self) -> WorkerGroup:
        with contextlib.ExitStack() as started:
            for worker in self.workers:
                started.enter_context(worker)
            started.pop_all()  # all up: __exit__ stops them
        return self

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    @property
    def pid(self) -> int:
        """The first worker's: the one a profile samples."""
        return self.workers[0].pid

    @property
    def log_paths(self) -> list[Path]:
        return [worker.log_path for worker in self.workers]

    def check(self) -> None:
        for worker in self.workers:
            worker.check()

    def sample(self) -> ProcSample:
        samples = [worker.sample() for worker in self.workers]
        return ProcSample(
            sum(s.cpu_seconds for s in samples),
            max(s.rss_mib for s in samples),
            max(s.peak_rss_mib for s in samples),
        )


@contextlib.contextmanager
def status_process(
    argv: Sequence[str], status: Path, what: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A helper process of the benchmark (a sink), up once it wrote its ``status`` file,
    stopped (SIGTERM, then SIGKILL) on exit."""
    process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not status.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {what} did not start")
            time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def fresh_status(
    status: Path, process: subprocess.Popen[bytes], what: str, every: float, timeout: float
) -> dict[str, Any]:
    """The helper's status, written after this call began (it writes one every ``every``
    seconds, stamped ``at``)."""
    asked = time.time()
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the {what} exited with status {process.returncode}")
        try:
            found = json.loads(status.read_text())
        except (OSError, ValueError):
            found = {}
        if isinstance(found, dict) and float(found.get("at", 0.0)) >= asked:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {what} wrote no status in time")
        time.sleep(every / 2)
