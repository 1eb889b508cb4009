"""Results, the machine they came from, and the Markdown table with the issue's ratios."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import sqlite3
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

CELERY_COMMANDS_PER_SECOND = 1040  # the figure for the Celery implementation
TARGET = {"postgresql": 1600, "sqlite": 1500}  # commands/s, batched (command-only)
TARGET_VS_CELERY = 3.0
TARGET_VS_SINGLE = 8.0
TARGET_P99_MS = 25.0  # with 50 commands in flight
TARGET_P99_IN_FLIGHT = 50
TARGET_SEQUENTIAL_P50_MS = 4.0
TARGET_HISTORY_RATIO = 0.9  # throughput with history / empty database
TARGET_TRACING_COST = 0.1  # tracing on may cost at most this share of the throughput
TARGET_MEMORY_GROWTH_PCT = 10.0
TARGET_E2E = 1000  # commands/s end to end with every email, PostgreSQL
TARGET_E2E_VS_COMMANDS = 0.8  # end to end / command-only
TARGET_WAL_PER_PAIR = 13 * 1024  # bytes per submit + approve
TARGET_FLUSHING_PER_COMMAND = 0.3

BUSY_HOST_PCT = 20.0  # above this, before the runs, the report warns about other load

DATABASE_NAMES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}


@dataclass
class RunResult:
    database: str
    mode: str  # batched | traced | single | ceiling
    history: int = 0
    memory: bool = False
    workers: int = 1  # worker (or ceiling) processes of the run
    commands: int = 0
    in_flight: int = 0
    seconds: float = math.nan  # first publish -> outbox empty
    replied_seconds: float = math.nan  # first publish -> last reply
    throughput: float = math.nan  # commands / seconds
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    sequential: int = 0
    seq_p50_ms: float = math.nan
    seq_p99_ms: float = math.nan
    worker_cpu_s: float = math.nan  # during the measured phase
    db_cpu_s: float = math.nan  # PostgreSQL: the run's sessions on the server
    broker_cpu_s: float = math.nan  # the RabbitMQ server (shared with anything else on it)
    smtp_cpu_s: float = math.nan  # e2e: the SMTP sink
    wal_bytes: int = -1  # PostgreSQL, measured phase (see benchmarks/pgstats.py)
    writing_commits: int = -1
    flushing_commits: int = -1
    db_scope: str = ""  # "database": the run's own transactions; "server": everything
    emails: int = 0  # e2e: accepted by the SMTP sink during the measured phase
    emails_expected: int = 0  # e2e: notification.requested written, all phases
    emails_total: int = 0  # e2e: accepted by the SMTP sink, all phases
    worker_peak_rss_mib: float = math.nan  # VmHWM over the worker's life
    loadgen_cpu_s: float = math.nan
    host_cpu_pct: float = math.nan
    relay_lag_ms: float = math.nan  # last reply -> outbox empty
    replies: int = 0
    errors: int = 0
    duplicates: int = 0
    backlog: int = -1  # unpublished events when the clock stopped (must be 0)
    processed: int = -1  # stored idempotency records (must equal commands sent)
    sent: int = 0  # commands sent in all phases (warm-up, sequential, measured)
    events: int = 0  # outbox rows written by the commands of this run
    events_queued: int | None = None  # with --bind-events: events in the bound queue
    spans_exported: int | None = None  # traced: spans the OTLP sink received
    spans_dropped: str = ""  # traced: the worker's warning that it dropped spans, if any
    rounds: list[float] = field(default_factory=list)  # --repeat: every round's commands/s
    rss_samples: list[tuple[int, float]] = field(default_factory=list)  # (commands, MiB)
    profile: list[str] = field(default_factory=list)  # with --profile: Markdown summary
    error_samples: list[str] = field(default_factory=list)
    failure: str | None = None

    @property
    def label(self) -> str:
        label = self.mode
        if self.history:
            label += f" +{self.history:,} history"
        if self.memory:
            label += " (memory)"
        return label

    @property
    def problems(self) -> list[str]:
        """Why the figures of this run cannot be trusted; empty when they can."""
        found = []
        if self.failure:
            found.append(f"failed: {self.failure}")
            return found
        if self.replies != self.commands:
            found.append(f"{self.replies} replies to {self.commands} commands")
        if self.errors:
            found.append(f"{self.errors} error replies, e.g. {'; '.join(self.error_samples)}")
        if self.backlog != 0:
            found.append(f"{self.backlog} events unpublished when the clock stopped")
        if self.processed != self.sent:
            found.append(f"{self.processed} commands stored as processed, {self.sent} sent")
        if self.mode == "traced" and not self.spans_exported:
            found.append("tracing on, but no span reached the OTLP sink")
        if self.mode == "traced" and self.spans_dropped:
            found.append(f"spans were dropped: {self.spans_dropped}")
        if self.mode == "e2e" and self.emails <= 0:
            found.append("no email reached the SMTP sink")
        if self.mode == "e2e" and self.emails_total != self.emails_expected:
            found.append(
                f"{self.emails_total} emails accepted for {self.emails_expected} notifications"
            )
        if self.events_queued is not None and self.events_queued < self.events:
            found.append(f"{self.events_queued} events queued, {self.events} written")
        return found

    def per_command(self, value: float, scale: float = 1.0) -> float:
        return math.nan if value < 0 or not self.commands else scale * value / self.commands

    @property
    def emails_per_second(self) -> float:
        return self.emails / self.seconds if self.emails and self.seconds else math.nan

    @property
    def memory_growth_pct(self) -> float:
        if len(self.rss_samples) < 2:
            return math.nan
        first, last = self.rss_samples[0][1], self.rss_samples[-1][1]
        return 100.0 * (last - first) / first if first else math.nan


@dataclass
class BenchReport:
    started: datetime
    settings: dict[str, Any]
    machine: dict[str, str]
    versions: dict[str, str]
    runs: list[RunResult]
    host_busy_before_pct: float = math.nan  # the machine's CPU use just before the runs

    @property
    def ok(self) -> bool:
        return bool(self.runs) and not any(r.problems for r in self.runs)


# --- where it ran -------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "?"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpus": f"{os.cpu_count()} ({usable} usable)",
        "cpu model": cpu,
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def git_revision() -> str:
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "diff-index", "--quiet", "HEAD", "--"], cwd=root, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "?"
    return head + (" + uncommitted changes" if dirty.returncode else "")


def versions(extra: dict[str, str]) -> dict[str, str]:
    found = {
        "subreq": f"{_version('subreq')} ({git_revision()})",
        "Python": platform.python_version(),
        "pika": _version("pika"),
        "psycopg": _version("psycopg"),
        "SQLAlchemy": _version("SQLAlchemy"),
        "SQLite": sqlite3.sqlite_version,
    }
    found.update(extra)
    return found


# --- rendering ----------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:,.{digits}f}"


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else (" — meets the target" if ok else " — **misses the target**")


def render(report: BenchReport) -> str:
    s = report.settings
    loops = "".join(f" {flag}" for flag in s.get("worker_loops") or [])
    if s.get("memory"):
        phases = (
            f"without warm-up or sequential phase (memory runs: the worker's RSS every "
            f"{s['memory_checkpoint']:,} commands)"
        )
    else:
        phases = (
            f"after {s['warmup']:,} warm-up commands; latency for sequential commands from "
            f"{s['sequential']:,} commands one at a time"
        )
    e2e = (
        f"e2e: the same worker with every loop on (email notifier and sweeper), "
        f"{s.get('e2e_commands', 0):,} measured commands, {s.get('e2e_in_flight', '?')} in "
        "flight, every email to a local SMTP sink"
        + (
            f" answering each mail after {s['slow_smtp']:g} ms"
            if s.get("slow_smtp")
            else " answering at once"
        )
        + "; its clock stops when the last email arrived. "
    )
    events = "Events are " + (
        "stored in a bound queue." if s.get("bind_events") else "unrouted (no queue bound)."
    )
    lines = [
        f"# subreq benchmark, {report.started:%Y-%m-%d %H:%M} UTC",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in report.machine.items()) + ".",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()) + ".",
        "",
        f"Load: {s['commands']:,} measured commands, 50% `request.submit` / 50% "
        f"`request.decide` (approve) over {s['accounts']:,} accounts, {s['in_flight']} in "
        f"flight, {phases}. Workers: {s.get('workers', 1)} processes on PostgreSQL "
        "(as docker-compose deploys them; the ceiling too), one on SQLite (one writer), "
        "their CPU summed and the largest one's memory. Worker: `subreq worker --batch "
        f"{s['batch']} --prefetch {s['prefetch']}{loops}` (batched), `--batch 1 --prefetch "
        f"{s['single_prefetch']}{loops}` (single: one transaction per message); ceiling: raw "
        f"pika + psycopg/sqlite3, same batching (`benchmarks/ceiling.py`). {e2e}"
        f"Command-only runs: {events}",
        "",
        _host_note(report.host_busy_before_pct),
        "",
        "The clock runs from the first publish until every command is answered **and** the "
        "outbox is empty (every event published with a broker confirm). Worker CPU is "
        "for the measured phase, with its child processes (the traced worker's span export "
        "process); peak RSS is the largest worker's VmHWM.",
        "",
    ]
    throughput_runs = [r for r in report.runs if not r.memory]
    if throughput_runs:
        lines += [
            "| database | mode | workers | commands | in flight | s | commands/s | emails/s "
            "| p50 ms | p99 ms | seq p50 ms | seq p99 ms | worker CPU s | CPU ms/cmd "
            "| peak RSS MiB | loadgen CPU s | host CPU % | relay lag ms | errors |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for r in throughput_runs:
            lines.append(
                "| "
                + " | ".join(
                    [
                        DATABASE_NAMES.get(r.database, r.database),
                        r.label,
                        _num(r.workers),
                        _num(r.commands),
                        _num(r.in_flight),
                        _num(r.seconds, 2),
                        f"**{_num(r.throughput)}**"
                        if r.mode in ("batched", "e2e")
                        else _num(r.throughput),
                        _num(r.emails_per_second),
                        _num(r.p50_ms, 1),
                        _num(r.p99_ms, 1),
                        _num(r.seq_p50_ms, 2),
                        _num(r.seq_p99_ms, 2),
                        _num(r.worker_cpu_s, 1),
                        _num(_ratio(r.worker_cpu_s * 1000, r.commands), 2),
                        _num(r.worker_peak_rss_mib, 0),
                        _num(r.loadgen_cpu_s, 1),
                        _num(r.host_cpu_pct, 0),
                        _num(r.relay_lag_ms, 0),
                        "failed" if r.failure else _num(r.errors),
                    ]
                )
                + " |"
            )
        repeated = [r for r in throughput_runs if len(r.rounds) > 1]
        if repeated:
            lines += [
                "",
                f"Each row is the median of {len(repeated[0].rounds)} rounds, run interleaved "
                "(every run once, then again); every round's commands/s: "
                + "; ".join(
                    f"{DATABASE_NAMES.get(r.database, r.database)} {r.label} "
                    + ", ".join(_num(t) for t in r.rounds)
                    for r in repeated
                )
                + ".",
            ]
        lines += ["", *_costs(throughput_runs)]
        for database in dict.fromkeys(r.database for r in throughput_runs):
            lines += _ratios(database, [r for r in throughput_runs if r.database == database])
    memory_runs = [r for r in report.runs if r.memory]
    if memory_runs:
        lines += _memory(memory_runs)
    profiled = [r for r in report.runs if r.profile]
    if profiled:
        lines += ["## Where the worker's time goes (py-spy, measured phase)", ""]
        for r in profiled:
            lines += r.profile
    problems = [(r, p) for r in report.runs for p in r.problems]
    if problems:
        lines += ["## Problems: these figures do not mean what they say", ""]
        for r, problem in problems:
            first, _, rest = problem.partition("\n")
            lines.append(f"- {DATABASE_NAMES.get(r.database, r.database)} {r.label}: {first}")
            if rest.strip():
                lines += ["", "  ```", *(f"  {line}" for line in rest.splitlines()), "  ```"]
        lines.append("")
    else:
        lines.append(
            "Checks: every command answered with the expected reply, every command stored "
            "once, every event published before the clock stopped."
        )
    return "\n".join(lines).rstrip() + "\n"


def _costs(runs: list[RunResult]) -> list[str]:
    """Per command: each process's CPU, and PostgreSQL's WAL and commits."""
    lines = [
        "Per command, measured phase: CPU of each process (PostgreSQL: the run's sessions; "
        "the broker: the whole server), and on PostgreSQL the WAL written and the commits that "
        "wrote (WAL-flushing: all but the relay's marks, which do not wait for the disk). "
        "WAL scope *database*: the run's own transactions, read with pg_walinspect after a "
        "checkpoint; *server*: everything the server wrote meanwhile.",
        "",
        "| database | mode | worker ms | PostgreSQL ms | broker ms | load generator ms "
        "| SMTP sink ms | WAL bytes | writing commits | WAL-flushing commits | WAL scope "
        "| worker peak RSS MiB |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|",
    ]
    for r in runs:
        cells = [
            DATABASE_NAMES.get(r.database, r.database),
            r.label,
            _num(r.per_command(r.worker_cpu_s, 1000), 2),
            _num(r.per_command(r.db_cpu_s, 1000), 2),
            _num(r.per_command(r.broker_cpu_s, 1000), 2),
            _num(r.per_command(r.loadgen_cpu_s, 1000), 2),
            _num(r.per_command(r.smtp_cpu_s, 1000), 2),
            _num(r.per_command(r.wal_bytes)),
            _num(r.per_command(r.writing_commits), 3),
            _num(r.per_command(r.flushing_commits), 3),
            r.db_scope or "—",
            _num(r.worker_peak_rss_mib, 0),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _host_note(busy: float) -> str:
    if math.isnan(busy):
        return "Host CPU before the runs: not measured."
    note = f"Host CPU busy in the second before the runs: {busy:.0f}%"
    if busy > BUSY_HOST_PCT:
        return note + " — **other processes were using the machine: the figures are skewed.**"
    return note + " (quiet)."


def _ratios(database: str, runs: list[RunResult]) -> list[str]:
    def find(mode: str, history: int = 0) -> RunResult | None:
        for r in runs:
            if r.mode == mode and r.history == history and not r.failure:
                return r
        return None

    batched, single, ceiling = find("batched"), find("single"), find("ceiling")
    traced, e2e = find("traced"), find("e2e")
    pg = database == "postgresql"
    out = [f"## {DATABASE_NAMES.get(database, database)}", ""]
    if e2e is not None:
        out.append(
            f"- end to end with every email: {_num(e2e.throughput)} commands/s, "
            f"{_num(e2e.emails_per_second)} emails/s"
            + (f" (target ≥ {TARGET_E2E:,}){_verdict(e2e.throughput >= TARGET_E2E)}" if pg else "")
        )
    if batched is None:
        return [*out, "- no batched run to compare", ""]
    if e2e is not None:
        share = _ratio(e2e.throughput, batched.throughput)
        verdict = _verdict(share >= TARGET_E2E_VS_COMMANDS)
        out.append(
            f"- end to end / command-only: {_num(100 * share)}% "
            f"(target ≥ {100 * TARGET_E2E_VS_COMMANDS:g}%){verdict}"
        )
    if batched.wal_bytes >= 0:
        pair = 2 * batched.per_command(batched.wal_bytes)
        flushing = batched.per_command(batched.flushing_commits)
        out.append(
            f"- command-only WAL per submit+approve pair: {_num(pair)} bytes (target ≤ "
            f"{TARGET_WAL_PER_PAIR:,}){_verdict(pair <= TARGET_WAL_PER_PAIR)}; WAL-flushing "
            f"commits per command: {_num(flushing, 3)} (target ≤ "
            f"{TARGET_FLUSHING_PER_COMMAND:g}){_verdict(flushing <= TARGET_FLUSHING_PER_COMMAND)}"
        )
    b = batched.throughput
    target = TARGET.get(database)
    out.append(
        f"- batched: {_num(b)} commands/s"
        + (f" (target ≥ {target:,}){_verdict(b >= target)}" if target else "")
    )
    vs_celery = _ratio(b, CELERY_COMMANDS_PER_SECOND)
    out.append(
        f"- batched / Celery (~{CELERY_COMMANDS_PER_SECOND:,} commands/s): {_num(vs_celery, 2)}x"
        + (
            f" (target ≥ {TARGET_VS_CELERY:g}x){_verdict(vs_celery >= TARGET_VS_CELERY)}"
            if pg
            else ""
        )
    )
    if single is not None:
        vs_single = _ratio(b, single.throughput)
        out.append(
            f"- batched / single (one transaction per message, {_num(single.throughput)} "
            f"commands/s): {_num(vs_single, 2)}x"
            + (
                f" (target ≥ {TARGET_VS_SINGLE:g}x){_verdict(vs_single >= TARGET_VS_SINGLE)}"
                if pg
                else ""
            )
        )
    if traced is not None:
        cost = 1 - _ratio(traced.throughput, b)
        change = (
            f"{_num(100 * cost)}% below tracing off"
            if cost >= 0
            else f"{_num(-100 * cost)}% above tracing off (no cost measurable)"
        )
        out.append(
            f"- tracing on (every span exported over OTLP/HTTP to a local sink), "
            f"{_num(traced.throughput)} commands/s: {change} "
            f"(target ≤ {100 * TARGET_TRACING_COST:g}%){_verdict(cost <= TARGET_TRACING_COST)}"
        )
    if ceiling is not None:
        vs_ceiling = _ratio(b, ceiling.throughput)
        out.append(
            f"- batched / ceiling (raw pika + driver, {_num(ceiling.throughput)} commands/s): "
            f"{_num(100 * vs_ceiling)}% of the ceiling"
        )
    if batched.in_flight == TARGET_P99_IN_FLIGHT:
        out.append(
            f"- p99 publish→reply with {TARGET_P99_IN_FLIGHT} in flight: "
            f"{_num(batched.p99_ms, 1)} ms"
            + (
                f" (target ≤ {TARGET_P99_MS:g} ms){_verdict(batched.p99_ms <= TARGET_P99_MS)}"
                if pg
                else ""
            )
        )
    else:
        out.append(
            f"- p99 publish→reply with {batched.in_flight} in flight: {_num(batched.p99_ms, 1)} ms "
            f"(the target is stated for {TARGET_P99_IN_FLIGHT} in flight: `--in-flight 50`)"
        )
    if batched.sequential:
        out.append(
            f"- p50 for sequential commands: {_num(batched.seq_p50_ms, 2)} ms"
            + (
                f" (target ≤ {TARGET_SEQUENTIAL_P50_MS:g} ms)"
                f"{_verdict(batched.seq_p50_ms <= TARGET_SEQUENTIAL_P50_MS)}"
                if pg
                else ""
            )
        )
    for r in runs:
        if r.mode == "batched" and r.history and not r.failure:
            ratio = _ratio(r.throughput, b)
            out.append(
                f"- batched with {r.history:,} historic requests: {_num(r.throughput)} commands/s"
                f" = {_num(100 * ratio)}% of the empty database (target ≥ "
                f"{100 * TARGET_HISTORY_RATIO:g}%){_verdict(ratio >= TARGET_HISTORY_RATIO)}"
            )
    return [*out, ""]


def _memory(runs: list[RunResult]) -> list[str]:
    lines = [
        "## Worker memory",
        "",
        "| database | mode | commands | commands/s | RSS at first sample MiB | RSS at end MiB "
        "| growth % | samples (commands: MiB) |",
        "|---|---|--:|--:|--:|--:|--:|---|",
    ]
    for r in runs:
        samples = ", ".join(f"{n:,}: {mib:.0f}" for n, mib in r.rss_samples)
        growth = r.memory_growth_pct
        verdict = "" if math.isnan(growth) else _verdict(growth < TARGET_MEMORY_GROWTH_PCT)
        lines.append(
            f"| {DATABASE_NAMES.get(r.database, r.database)} | {r.mode} | {_num(r.commands)} "
            f"| {_num(r.throughput)} "
            f"| {_num(r.rss_samples[0][1], 1) if r.rss_samples else '—'} "
            f"| {_num(r.rss_samples[-1][1], 1) if r.rss_samples else '—'} "
            f"| {_num(growth, 1)}{verdict} "
            f"| {samples} |"
        )
    return [
        *lines,
        "",
        f"Target: RSS growth < {TARGET_MEMORY_GROWTH_PCT:g}% from the first sample to the end.",
        "",
    ]


def write(report: BenchReport, path: Path) -> None:
    """The Markdown next to a JSON copy of every figure (``latest.md``, ``latest.json``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report))
    data = {
        "started": report.started.isoformat(),
        "host_busy_before_pct": report.host_busy_before_pct,
        "settings": report.settings,
        "machine": report.machine,
        "versions": report.versions,
        "runs": [{**dataclasses.asdict(r), "problems": r.problems} for r in report.runs],
    }
    path.with_suffix(".json").write_text(json.dumps(_finite(data), indent=2, default=str) + "\n")


def _finite(value: Any) -> Any:
    """NaN (a figure not measured) as null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def now() -> datetime:
    return datetime.now(UTC)
