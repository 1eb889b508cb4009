"""``python -m benchmarks.bench``: subreq end to end with email, command-only, one transaction
per message, and a ceiling.

Every run (one database, one mode) gets a fresh RabbitMQ vhost and a fresh database
(PostgreSQL: a new database; SQLite: a new file in a temporary folder), seeded without
timing, and its own worker processes (``--workers``, two on PostgreSQL by default as
docker-compose deploys them, one per core; one on SQLite, which has one writer), which are
stopped and whose vhost and database are removed at the end, also on error or Ctrl-C.
Modes:

- ``e2e``: ``subreq worker --batch 100 --prefetch 500`` as deployed, its email notifier on,
  every email to a local SMTP sink (``benchmarks/smtp_sink.py``, ``--slow-smtp MS`` to
  answer each mail after MS), ``--e2e-in-flight`` commands outstanding (500); the clock
  stops when the last email arrived;
- ``batched``: the same worker on the command path only (``--no-notify --no-sweep``);
- ``single``: ``subreq worker --batch 1 --prefetch 50``, one transaction per message;
- ``ceiling``: ``benchmarks/ceiling.py``, raw pika + psycopg/sqlite3 doing the same writes.

A run has a warm-up, then commands one at a time (the sequential latency), then the
measured phase, whose clock stops when every command is answered and the outbox is
empty, i.e. every event was published with a broker confirm (e2e: and every email arrived).
Beside the rates and latencies it measures the CPU of each process per command (worker,
load generator, the run's PostgreSQL sessions, the broker, the SMTP sink), and on
PostgreSQL the WAL and the writing and WAL-flushing commits per command
(``benchmarks/pgstats.py``).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing, nullcontext
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from types import FrameType

from benchmarks import ceiling, pgstats, profile, report, seed, services
from benchmarks.load import Backlog, BenchError, LoadGenerator, Phase
from benchmarks.otlp_sink import otlp_sink_process
from benchmarks.procs import (
    WorkerDied,
    WorkerGroup,
    WorkerProcess,
    broker_pid,
    host_busy_percent,
    host_cpu,
    sample,
)
from benchmarks.report import BenchReport, RunResult
from benchmarks.smtp_sink import SmtpSink, smtp_sink

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "latest.md"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DATABASES = ("postgresql", "sqlite")
MODES = ("e2e", "batched", "traced", "single", "ceiling")
"""traced: batched with OpenTelemetry on (every span exported to a local OTLP sink)."""
DEFAULT_MODES = ("e2e", "batched", "single", "ceiling")

DEFAULT_SIZES = {
    "commands": 20_000,
    "e2e_commands": 4000,
    "accounts": 1000,
    "warmup": 1000,
    "sequential": 500,
    "memory_checkpoint": 10_000,
}
MEMORY_COMMANDS = 200_000
SMOKE_SIZES = {
    "commands": 200,
    "e2e_commands": 200,
    "accounts": 20,
    "warmup": 20,
    "sequential": 20,
    "memory_checkpoint": 50,
}

Log = Callable[[str], None]


def _csv(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(value: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        unknown = [v for v in items if v not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"{value!r}: choose among {', '.join(choices)} (comma-separated)"
            )
        return list(dict.fromkeys(items))

    return parse


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_argument_group("sizes (defaults; --smoke makes them tiny)")
    size.add_argument("--commands", type=int, help="measured commands per run (20000)")
    size.add_argument(
        "--accounts", type=int, help="accounts, each with an owner and an admin (1000)"
    )
    size.add_argument("--in-flight", type=int, default=50, help="commands outstanding (50)")
    size.add_argument(
        "--e2e-in-flight", type=int, default=500, help="commands outstanding in e2e runs (500)"
    )
    size.add_argument(
        "--e2e-commands",
        type=int,
        help="measured commands of an e2e run (4000: two rounds of a submit and an approval "
        "over 1,000 accounts)",
    )
    size.add_argument("--warmup", type=int, help="unmeasured commands first (1000)")
    size.add_argument("--sequential", type=int, help="commands sent one at a time (500; 0: none)")
    size.add_argument(
        "--history",
        type=int,
        default=0,
        help="also run batched on a database holding N historic requests (0: no such run)",
    )
    size.add_argument("--smoke", action="store_true", help="a tiny size, for CI")
    what = parser.add_argument_group("what to run")
    what.add_argument("--databases", type=_csv(DATABASES), default=list(DATABASES))
    what.add_argument(
        "--modes", type=_csv(MODES), help=f"default: {','.join(DEFAULT_MODES)}; also: traced"
    )
    what.add_argument(
        "--memory",
        action="store_true",
        help="memory runs instead: worker RSS every --memory-checkpoint commands "
        f"(--commands defaults to {MEMORY_COMMANDS}, --modes to batched)",
    )
    what.add_argument("--memory-checkpoint", type=int, help="commands between RSS samples (10000)")
    what.add_argument(
        "--slow-smtp",
        type=float,
        default=0.0,
        metavar="MS",
        help="e2e: the SMTP sink answers each mail after MS milliseconds (a remote relay)",
    )
    what.add_argument(
        "--bind-events",
        action="store_true",
        help="bind a durable queue to subreq.events (events are stored, and counted)",
    )
    worker = parser.add_argument_group("worker")
    worker.add_argument(
        "--workers",
        type=int,
        default=2,
        help="worker processes of each PostgreSQL run, ceiling included (2: as docker-compose "
        "deploys them, one per core); SQLite runs have one, SQLite having one writer",
    )
    worker.add_argument("--batch", type=int, default=100, help="batched mode --batch (100)")
    worker.add_argument("--prefetch", type=int, default=500, help="batched mode --prefetch (500)")
    worker.add_argument(
        "--single-prefetch", type=int, default=50, help="single mode --prefetch (50)"
    )
    services_ = parser.add_argument_group("services")
    services_.add_argument(
        "--amqp-url",
        default=os.environ.get("SUBREQ_BENCH_AMQP_URL", DEFAULT_AMQP_URL),
        help="broker; a fresh vhost is created on it per run "
        "(default: $SUBREQ_BENCH_AMQP_URL or %(default)s)",
    )
    services_.add_argument(
        "--reuse-vhost",
        action="store_true",
        help="run in the vhost of --amqp-url, deleting the run's queues and exchanges after "
        "each run, instead of creating vhosts (no management API or rabbitmqctl needed)",
    )
    services_.add_argument(
        "--postgres-url",
        default=os.environ.get("SUBREQ_BENCH_DATABASE_URL", DEFAULT_POSTGRES_URL),
        help="PostgreSQL server; a fresh database is created on it per run "
        "(default: $SUBREQ_BENCH_DATABASE_URL or %(default)s)",
    )
    limits = parser.add_argument_group("limits (seconds)")
    limits.add_argument("--start-timeout", type=float, default=60.0)
    limits.add_argument("--reply-timeout", type=float, default=60.0)
    limits.add_argument("--drain-timeout", type=float, default=120.0)
    limits.add_argument(
        "--e2e-drain-timeout",
        type=float,
        default=600.0,
        help="e2e: how long every email may take to arrive after the last reply",
    )
    parser.add_argument(
        "--output",
        default=str(DEFAULT_OUTPUT),
        help="Markdown report (a .json copy beside it); 'none' to skip "
        "(default: benchmarks/results/latest.md)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run the plan N times, interleaved (every run once, then again), and report "
        "each run's median by commands/s, with every round's figure (1)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample each worker with py-spy during the measured phase: the stacks go beside "
        "the report, the top functions into it",
    )
    args = parser.parse_args(argv)
    if args.profile:
        try:
            profile.py_spy()
        except profile.ProfilerMissing as exc:
            parser.error(str(exc))

    explicit_commands = args.commands is not None
    for name, value in (SMOKE_SIZES if args.smoke else DEFAULT_SIZES).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.memory and not explicit_commands and not args.smoke:
        args.commands = MEMORY_COMMANDS
    if args.modes is None:
        args.modes = ["batched"] if args.memory else list(DEFAULT_MODES)
    names = ("commands", "e2e_commands", "accounts", "in_flight", "e2e_in_flight", "batch")
    names += ("prefetch",)
    for name in (*names, "single_prefetch", "repeat", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("warmup", "sequential", "history", "memory_checkpoint", "slow_smtp"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    args.in_flight = min(args.in_flight, args.accounts)
    args.e2e_in_flight = min(args.e2e_in_flight, args.accounts)
    args.worker_loops = None  # the worker's flags, found out by run()
    return args


@dataclass(frozen=True)
class RunSpec:
    database: str
    mode: str
    history: int = 0
    memory: bool = False


def plan(args: argparse.Namespace) -> list[RunSpec]:
    runs = []
    for database in args.databases:
        for mode in args.modes:
            runs.append(RunSpec(database, mode, args.history if args.memory else 0, args.memory))
        if args.history and not args.memory:
            runs.append(RunSpec(database, "batched", args.history))
    return runs


def subreq_command() -> list[str]:
    script = Path(sys.executable).with_name("subreq")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from consumers.cli import main; main()"]


def worker_loops() -> list[str]:
    """Flags that keep ``subreq worker`` to the command path (consumer and relay); empty
    for a worker that has no other loops."""
    help_text = subprocess.run(
        [*subreq_command(), "worker", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"},
    ).stdout
    return [flag for flag in ("--no-notify", "--no-sweep") if flag in help_text]


def worker_argv(args: argparse.Namespace, mode: str) -> list[str]:
    if mode == "ceiling":
        argv = [sys.executable, "-m", "benchmarks.ceiling"]
        argv += ["--batch", str(args.batch), "--prefetch", str(args.prefetch)]
        return argv
    batch, prefetch = (args.batch, args.prefetch) if mode != "single" else (1, args.single_prefetch)
    loops = [] if mode == "e2e" else args.worker_loops  # e2e: every loop, as deployed
    flags = ["--batch", str(batch), "--prefetch", str(prefetch), *loops]
    return [*subreq_command(), "worker", *flags]


def workers_of(args: argparse.Namespace, spec: RunSpec) -> int:
    """Worker processes of a run: ``--workers`` on PostgreSQL, one on SQLite (one writer)."""
    return args.workers if spec.database == "postgresql" else 1


def worker_env(
    amqp_url: str,
    database_url: str,
    folder: Path,
    otlp_endpoint: str | None = None,
    smtp_url: str | None = None,
) -> dict[str, str]:
    """The benchmark's services, and nothing else of the caller's SUBREQ_* or OTEL_*
    settings (a SUBREQ_SMTP_URL would send real mail, a SUBREQ_METRICS_PORT could clash,
    an OTEL_* variable would trace a run that should not be); ``otlp_endpoint``: trace;
    ``smtp_url``: the sink every email goes to."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUBREQ_", "OTEL_"))}
    if otlp_endpoint is not None:
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=otlp_endpoint, OTEL_SERVICE_NAME="subreq-bench")
    env.update(
        SUBREQ_AMQP_URL=amqp_url,
        SUBREQ_DATABASE_URL=database_url,
        SUBREQ_MAIL_DIR=str(folder / "mail"),  # unused: the notifier is off or has smtp_url
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    )
    if smtp_url is not None:
        env["SUBREQ_SMTP_URL"] = smtp_url
    return env


def run_one(args: argparse.Namespace, spec: RunSpec, log: Log) -> RunResult:
    """One run, recorded as failed (not raised) when anything goes wrong but Ctrl-C."""
    result = RunResult(spec.database, spec.mode, spec.history, spec.memory)
    try:
        _run(args, spec, result, log)
    except Exception as exc:
        result.failure = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {result.failure}")
        if not isinstance(exc, BenchError | WorkerDied):
            log(traceback.format_exc())
    return result


def _run(args: argparse.Namespace, spec: RunSpec, result: RunResult, log: Log) -> None:
    with ExitStack() as stack:
        folder = Path(stack.enter_context(TemporaryDirectory(prefix="subreq-bench-")))
        amqp_url = stack.enter_context(services.amqp_vhost(args.amqp_url, reuse=args.reuse_vhost))
        if spec.database == "postgresql":
            database_url = stack.enter_context(services.postgres_database(args.postgres_url))
        else:
            database_url = f"sqlite:///{folder / 'bench.db'}"

        accounts = seed.account_ids(args.accounts)
        started = time.perf_counter()
        history = f" and {spec.history:,} historic requests" if spec.history else ""
        log(f"seeding {len(accounts):,} accounts{history}")
        if spec.mode == "ceiling":
            ceiling.create_schema(
                database_url, [(a, seed.owner_of(a), seed.admin_of(a)) for a in accounts]
            )
            outbox_table, processed_table, marks = "bench_outbox", "bench_replies", None
        else:
            seed.prepare_subreq(database_url, accounts, spec.history)
            outbox_table, processed_table, marks = (
                "outbox",
                "processed_commands",
                "outbox_published",
            )
        log(f"seeded in {time.perf_counter() - started:.1f}s; starting the {spec.mode} worker")
        sink = stack.enter_context(otlp_sink_process(folder)) if spec.mode == "traced" else None
        if sink is not None:  # on the way out, once the workers stopped (their last spans go
            # out as they stop) and before the sink does
            stack.callback(lambda: setattr(result, "spans_exported", sink.spans))
        otlp = sink.endpoint if sink is not None else None
        mail: SmtpSink | None = None
        if spec.mode == "e2e":
            mail = stack.enter_context(smtp_sink(folder, args.slow_smtp))

        count = workers_of(args, spec)
        worker = stack.enter_context(
            WorkerGroup(
                [
                    WorkerProcess(
                        worker_argv(args, spec.mode),
                        env=worker_env(
                            amqp_url,
                            database_url,
                            folder,
                            otlp,
                            mail.url if mail is not None else None,
                        ),
                        log_path=folder / ("worker.log" if n == 0 else f"worker-{n + 1}.log"),
                        cwd=folder,
                        label=f"{spec.mode} worker" + (f" {n + 1}" if count > 1 else ""),
                    )
                    for n in range(count)
                ]
            )
        )
        result.workers = count
        load = stack.enter_context(
            LoadGenerator(amqp_url, accounts, check=worker.check, reply_timeout=args.reply_timeout)
        )
        backlog = stack.enter_context(Backlog(database_url, outbox_table, marks))
        load.wait_consuming(args.start_timeout, consumers=count)
        if args.bind_events:
            load.bind_events()
        events_before = backlog.total()
        settled = None if mail is None else EmailsArrived(backlog, mail)
        in_flight = args.e2e_in_flight if spec.mode == "e2e" else args.in_flight
        commands = args.e2e_commands if spec.mode == "e2e" else args.commands
        drain_timeout = args.e2e_drain_timeout if spec.mode == "e2e" else args.drain_timeout

        def phase(name: str, commands: int, in_flight: int) -> Phase:
            log(f"{name}: {commands:,} commands, {in_flight} in flight")
            done = load.run(name, commands, in_flight)
            load.drain(backlog, done, drain_timeout, settled=settled)
            _count_errors(result, done)
            return done

        if args.warmup and not spec.memory:
            phase("warm-up", args.warmup, in_flight)
        if args.sequential and not spec.memory:
            sequential = phase("sequential", args.sequential, 1)
            result.sequential = sequential.commands
            result.seq_p50_ms = sequential.percentile(0.50)
            result.seq_p99_ms = sequential.percentile(0.99)

        next_sample = args.memory_checkpoint

        def sample_memory(replies: int) -> None:
            nonlocal next_sample
            if spec.memory and next_sample and replies >= next_sample:
                result.rss_samples.append((replies, worker.sample().rss_mib))
                next_sample += args.memory_checkpoint

        log(f"measuring: {commands:,} commands, {in_flight} in flight")
        counters = None
        if spec.database == "postgresql":
            counters = stack.enter_context(closing(pgstats.PostgresCounters(database_url)))
            counters.start()
        others = OtherProcesses(mail)
        emails_before = mail.status().accepted if mail is not None else 0
        before, host_before, cpu_before = worker.sample(), host_cpu(), time.process_time()
        stacks = profile_path(args, spec, folder)
        with profile.recording(worker.pid, stacks) if stacks else nullcontext():
            measured = load.run("measured", commands, in_flight, on_reply=sample_memory)
            load.drain(backlog, measured, drain_timeout, settled=settled)  # clock stops
            if isinstance(settled, EmailsArrived):
                measured.drained = max(measured.replied, settled.last_arrival())
        if isinstance(settled, EmailsArrived):  # off the clock: the notifier's own events
            load.drain(backlog, None, drain_timeout, settled=settled.recorded)
        if stacks:
            title = f"{report.DATABASE_NAMES.get(spec.database, spec.database)} {result.label}"
            result.profile = profile.markdown(title, profile.summarize(stacks), stacks)
        after, host_after = worker.sample(), host_cpu()
        measured.loadgen_cpu = time.process_time() - cpu_before
        result.broker_cpu_s, result.smtp_cpu_s = others.used()
        if mail is not None:
            result.emails_total = mail.status().accepted
            result.emails = result.emails_total - emails_before
            result.emails_expected = settled.expected if isinstance(settled, EmailsArrived) else 0
        if counters is not None:
            cost = counters.stop()
            result.wal_bytes, result.writing_commits = cost.wal_bytes, cost.writing_commits
            result.flushing_commits, result.db_cpu_s = cost.flushing_commits, cost.backend_cpu_s
            result.db_scope = cost.scope
        _count_errors(result, measured)

        result.commands, result.in_flight = measured.commands, measured.in_flight
        result.replies, result.duplicates = measured.replies, measured.duplicates
        result.seconds, result.replied_seconds = (
            measured.seconds,
            measured.replied - measured.started,
        )
        result.throughput = measured.commands / measured.seconds
        result.p50_ms, result.p99_ms = measured.percentile(0.50), measured.percentile(0.99)
        result.max_ms = measured.percentile(1.0)
        result.relay_lag_ms = measured.relay_lag * 1000
        result.worker_cpu_s = after.cpu_seconds - before.cpu_seconds
        result.worker_peak_rss_mib = after.peak_rss_mib
        result.loadgen_cpu_s = measured.loadgen_cpu
        result.host_cpu_pct = host_busy_percent(host_before, host_after)
        if spec.memory and (
            not result.rss_samples or result.rss_samples[-1][0] != measured.commands
        ):
            result.rss_samples.append((measured.commands, after.rss_mib))

        result.backlog = _final_backlog(database_url, spec.mode, backlog)
        result.processed = backlog.count(processed_table)
        result.sent = load.sent
        result.events = backlog.total() - events_before
        if args.bind_events:
            result.events_queued = load.queued_events()
    if sink is not None:
        result.spans_dropped = next(
            (found for path in worker.log_paths if (found := _spans_dropped(path))), ""
        )
    log(
        f"{result.throughput:,.0f} commands/s, p50 {result.p50_ms:.1f} ms, "
        f"p99 {result.p99_ms:.1f} ms, relay lag {result.relay_lag_ms:.0f} ms"
        + (f"; problems: {result.problems}" if result.problems else "")
    )


class EmailsArrived:
    """The e2e clock's condition: the sink accepted an email for every
    ``notification.requested`` the commands wrote (counted once every command was
    answered: no more are written then)."""

    def __init__(self, backlog: Backlog, sink: SmtpSink) -> None:
        self.backlog = backlog
        self.sink = sink
        self.expected = 0
        self._offset = time.perf_counter() - time.time()

    def __call__(self) -> bool:
        self.expected = self.backlog.count_type("notification.requested")
        return self.sink.status().accepted >= self.expected

    def recorded(self) -> bool:
        """Whether the notifier recorded every email it sent (a ``notification.sent``
        each): only then is the outbox's backlog final."""
        return self.backlog.count_type("notification.sent") >= self.expected

    def last_arrival(self) -> float:
        """When the last email arrived, on ``perf_counter``'s clock."""
        return self.sink.status().last + self._offset


class OtherProcesses:
    """CPU seconds of the broker (the whole server: others may use it too) and of the SMTP
    sink, from construction to :meth:`used`."""

    def __init__(self, mail: SmtpSink | None) -> None:
        self.broker = broker_pid()
        self.mail = mail
        self._broker0 = self._cpu(self.broker)
        self._mail0 = mail.cpu_seconds() if mail is not None else float("nan")

    @staticmethod
    def _cpu(pid: int | None) -> float:
        if pid is None:
            return float("nan")
        try:
            return sample(pid).cpu_seconds
        except OSError:
            return float("nan")

    def used(self) -> tuple[float, float]:
        mail = self.mail.cpu_seconds() if self.mail is not None else float("nan")
        return self._cpu(self.broker) - self._broker0, mail - self._mail0


def _spans_dropped(worker_log: Path) -> str:
    """The worker's last warning that it dropped spans (queue full, export process gone),
    or nothing: a traced run counts only if every span was exported."""
    found = ""
    if worker_log.exists():
        for line in worker_log.read_text(errors="replace").splitlines():
            if "spans dropped so far" in line:
                found = line.strip()[-200:]
    return found


def profile_path(args: argparse.Namespace, spec: RunSpec, folder: Path) -> Path | None:
    """Where a run's py-spy stacks go: beside the report (in the run's scratch folder when
    there is no report), or nowhere without ``--profile``."""
    if not args.profile:
        return None
    name = f"profile-{spec.database}-{spec.mode}{'-history' if spec.history else ''}.txt"
    if args.output.lower() == "none":
        return folder / name
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    return Path(args.output).parent / name


def _count_errors(result: RunResult, phase: Phase) -> None:
    result.errors += phase.errors
    result.error_samples.extend(phase.error_samples[: 5 - len(result.error_samples)])


def _final_backlog(database_url: str, mode: str, backlog: Backlog) -> int:
    """For subreq, the project's own ``workflow.app.outbox.backlog`` has the last word."""
    if mode == "ceiling":
        return backlog.unpublished()
    from workflow.app.outbox import backlog as outbox_backlog
    from workflow.persistence.database import Database

    db = Database(database_url, pool_size=1)
    try:
        return outbox_backlog(db)[0]
    finally:
        db.dispose()


def environment(args: argparse.Namespace, log: Log) -> dict[str, str]:
    extra = {}
    try:
        extra["RabbitMQ"] = services.rabbitmq_version(args.amqp_url)
    except Exception as exc:  # the runs will say what is wrong with the broker
        log(f"cannot read the RabbitMQ version: {exc!r}")
    if "postgresql" in args.databases:
        try:
            extra["PostgreSQL"] = services.postgres_version(args.postgres_url)
        except Exception as exc:
            log(f"cannot read the PostgreSQL version: {exc!r}")
    return report.versions(extra)


def run(args: argparse.Namespace, *, log: Log | None = None) -> BenchReport:
    """Every planned run, then the report (printed by :func:`main`)."""
    log = log or (lambda _message: None)
    started = report.now()
    if args.worker_loops is None:
        args.worker_loops = worker_loops()
    idle_before = host_cpu()
    time.sleep(1.0)
    busy_before = host_busy_percent(idle_before, host_cpu())
    if busy_before > report.BUSY_HOST_PCT:
        log(f"warning: the machine is already {busy_before:.0f}% busy; figures will be skewed")
    bench = BenchReport(
        started=started,
        settings={
            k: getattr(args, k)
            for k in (
                "commands",
                "accounts",
                "in_flight",
                "warmup",
                "sequential",
                "history",
                "memory",
                "memory_checkpoint",
                "batch",
                "prefetch",
                "single_prefetch",
                "bind_events",
                "e2e_commands",
                "e2e_in_flight",
                "slow_smtp",
                "worker_loops",
                "databases",
                "modes",
                "repeat",
                "workers",
            )
        },
        machine=report.machine(),
        versions=environment(args, log),
        runs=[],
        host_busy_before_pct=busy_before,
    )
    specs = plan(args)
    rounds: dict[RunSpec, list[RunResult]] = {spec: [] for spec in specs}
    for round_ in range(args.repeat):
        for spec in specs:
            name = f"{spec.database}/{spec.mode}" + (
                f"+history {spec.history:,}" if spec.history else ""
            )
            if args.repeat > 1:
                name += f" round {round_ + 1}/{args.repeat}"
            clock = time.perf_counter()

            def prefixed(message: str, name: str = name, clock: float = clock) -> None:
                log(f"[{time.perf_counter() - clock:6.1f}s {name}] {message}")

            rounds[spec].append(run_one(args, spec, prefixed))
    bench.runs = [median_run(results) for results in rounds.values()]
    return bench


def median_run(results: Sequence[RunResult]) -> RunResult:
    """The run of median throughput (the lower of two middles), with every round's figure;
    a run whose figures cannot be trusted is the one reported, so it is never hidden."""
    failed = [r for r in results if r.problems]
    chosen = (
        failed[0]
        if failed
        else sorted(results, key=lambda r: r.throughput)[(len(results) - 1) // 2]
    )
    if len(results) > 1:
        chosen.rounds = [r.throughput for r in results]
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds every run: workers stopped, vhosts and databases gone

    signal.signal(signal.SIGTERM, on_sigterm)

    def log(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    try:
        bench = run(args, log=log)
    except KeyboardInterrupt:
        print("interrupted; everything the runs created was removed", file=sys.stderr)
        return 130
    text = report.render(bench)
    print(text, end="")
    if args.output.lower() != "none":
        path = Path(args.output)
        report.write(bench, path)
        log(f"written to {path} and {path.with_suffix('.json')}")
    return 0 if bench.ok else 1


if __name__ == "__main__":
    sys.exit(main())
