"""Where the worker's time goes during the measured phase: py-spy, and a summary of its stacks.

``py-spy record`` samples the worker process from outside (no change to the code under
test) and writes collapsed stacks: one line per distinct stack, frames joined by ``;``, then
the sample count. The summary gives, per function, the share of samples in which it is on
the stack (inclusive) and at its top (self). Samples are wall-clock samples of every thread
that is not idle, so a thread blocked in ``poll()`` or on a database answer still counts.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path

RATE = 200  # samples per second

SKIP = ("Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run", "<module>")
"""Frames at the bottom of every thread's stack: always 100%, never informative."""


class ProfilerMissing(RuntimeError):
    """py-spy is not installed where the benchmark runs."""


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise ProfilerMissing("--profile needs py-spy: pip install py-spy")
    return found


@contextlib.contextmanager
def recording(pid: int, output: Path) -> Iterator[None]:
    """Samples ``pid`` while the block runs; the stacks are in ``output`` afterwards."""
    argv = [py_spy(), "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw"]
    process = subprocess.Popen(
        [*argv, "--output", str(output), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes what it has, then exits
        try:
            _, errors = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        if not output.exists():
            raise RuntimeError(f"py-spy wrote no profile: {errors.decode(errors='replace')}")


def _function(frame: str) -> str:
    """``name (path/to/file.py:12)`` -> ``name (file.py)``; the line would split a function."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})" if where else name


@dataclass(frozen=True)
class Summary:
    samples: int
    inclusive: list[tuple[str, float | None]]  # (function, share of samples in %)
    leaf: list[tuple[str, float | None]]


def summarize(stacks: Path, top: int = 15) -> Summary:
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    for line in stacks.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_function(f) for f in stack.split(";")]
        for function in set(frames):
            if not function.startswith(SKIP):
                inclusive[function] += samples
        leaf[frames[-1]] += samples
    if not total:
        return Summary(0, [], [])

    def shares(counter: Counter[str]) -> list[tuple[str, float | None]]:
        return [(f, 100 * n / total) for f, n in counter.most_common(top)]

    return Summary(total, shares(inclusive), shares(leaf))


def markdown(title: str, summary: Summary, stacks: Path) -> list[str]:
    lines = [
        f"### {title}",
        "",
        f"{summary.samples:,} samples at {RATE}/s (`{stacks.name}`: collapsed stacks, e.g. for "
        "speedscope or flamegraph.pl).",
        "",
        "| on the stack | function | | at the top | function |",
        "|--:|---|---|--:|---|",
    ]
    blank: tuple[str, float | None] = ("", None)
    for (on_stack, share), (at_top, own) in zip_longest(
        summary.inclusive, summary.leaf, fillvalue=blank
    ):
        lines.append(f"| {_pct(share)} | {_code(on_stack)} | | {_pct(own)} | {_code(at_top)} |")
    return [*lines, ""]


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}%"


def _code(text: str) -> str:
    return f"`{text}`" if text else ""
