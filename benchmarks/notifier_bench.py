"""The email notifier alone: emails per second and CPU per email, to a local SMTP sink and
to one that answers each mail after ``--slow-smtp`` ms (as a remote relay does).

``python -m benchmarks.notifier_bench [--emails N] [--slow-smtp MS] [--connections K]``

Each case gets a fresh PostgreSQL database, N pending notifications written the way
commands write them (``SqlStore.add_event`` of ``notification.requested``, which adds the
delivery record in the same transaction, 500 per transaction), and the real notifier
(``consumers.notifier.Notifier`` with SMTP connections to ``benchmarks.smtp_sink``). The
clock runs from the notifier's start until every record says ``sent``. CPU is measured
per process: this one (the notifier; the poll that watches it is negligible), the sink,
and the database's backends.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.procs import host_busy_percent, host_cpu, sample
from benchmarks.services import pg_connect, postgres_database
from benchmarks.smtp_sink import SmtpSink, smtp_sink
from consumers.mail import SmtpMailer
from consumers.metrics import EMAIL_WINDOW
from consumers.notifier import Notifier
from workflow.contract.examples import EVENT_EXAMPLES
from workflow.contract.names import NOTIFICATION_REQUESTED
from workflow.notifications.mailconfig import parse_mail_from, parse_smtp_url
from workflow.persistence import migrate
from workflow.persistence.database import Database

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
WRITE_BATCH = 500


@dataclass(frozen=True)
class Window:
    """The email window of a run, from the notifier's histogram (``EMAIL_WINDOW``): the
    mean, and the bucket bounds the median and the 99th percentile fall under."""

    mean: float
    p50: float
    p99: float

    @staticmethod
    def between(
        before: Sequence[tuple[float, float]],
        after: Sequence[tuple[float, float]],
        count: float,
        total: float,
    ) -> Window:
        """From two snapshots of the cumulative buckets ``(bound, count)`` and the run's
        count and sum of observations."""
        grown = [(bound, a - b) for (bound, a), (_, b) in zip(after, before, strict=True)]

        def under(q: float) -> float:
            return next((bound for bound, n in grown if n >= q * count), float("inf"))

        return Window(total / count if count else 0.0, under(0.5), under(0.99))


def window_snapshot() -> tuple[list[tuple[float, float]], float, float]:
    """The cumulative buckets, count and sum of ``EMAIL_WINDOW`` now."""
    buckets: list[tuple[float, float]] = []
    count = total = 0.0
    for metric in EMAIL_WINDOW.collect():
        for point in metric.samples:
            if point.name.endswith("_bucket"):
                buckets.append((float(point.labels["le"]), point.value))
            elif point.name.endswith("_count"):
                count = point.value
            elif point.name.endswith("_sum"):
                total = point.value
    return buckets, count, total


@dataclass(frozen=True)
class Result:
    case: str
    emails: int
    connections: int
    seconds: float
    notifier_cpu: float
    sink_cpu: float
    database_cpu: float
    received: int = 0
    """Mails the sink accepted: one per email, or some were sent twice."""
    host_busy: float = 0.0
    """Percent of the machine's CPU busy during the run, whoever used it."""
    window: Window | None = None
    """From each mail's 250 to the commit recording it sent."""

    @property
    def ours(self) -> float:
        """Percent of the machine's CPU this run's processes used."""
        cores = os.cpu_count() or 1
        used = self.notifier_cpu + self.sink_cpu + self.database_cpu
        return 100 * used / (self.seconds * cores) if self.seconds else 0.0

    @property
    def rate(self) -> float:
        return self.emails / self.seconds if self.seconds else 0.0

    def per_email_ms(self, cpu: float) -> float:
        return 1000 * cpu / self.emails if self.emails else 0.0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.notifier_bench")
    parser.add_argument("--emails", type=int, default=3000, help="emails per case")
    parser.add_argument(
        "--slow-smtp",
        type=float,
        default=50.0,
        metavar="MS",
        help="the slow sink's wait before each 250 (0: only the local sink)",
    )
    parser.add_argument("--connections", type=int, default=16, help="SMTP connections")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("SUBREQ_BENCH_DATABASE_URL", DEFAULT_POSTGRES_URL),
        help="PostgreSQL server; a fresh database per case",
    )
    parser.add_argument(
        "--amqp-url",
        default=os.environ.get("SUBREQ_BENCH_AMQP_URL", DEFAULT_AMQP_URL),
        help="broker, for dead letters only (none are expected)",
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per case")
    args = parser.parse_args(argv)
    if args.emails < 1 or args.connections < 1 or args.slow_smtp < 0:
        parser.error("--emails and --connections must be positive, --slow-smtp not negative")
    return args


def request_emails(db: Database, count: int) -> None:
    """``count`` pending notifications, as commands write them."""
    data = EVENT_EXAMPLES[NOTIFICATION_REQUESTED]["data"]
    now = datetime.now(UTC)
    for start in range(0, count, WRITE_BATCH):
        with db.store(lock=False) as store:
            for n in range(start, min(count, start + WRITE_BATCH)):
                notice = copy.deepcopy(data)
                notice["notification_id"] = str(uuid.uuid4())
                notice["recipient"] = {
                    "user_id": f"u{n}",
                    "email": f"member-{n}@acme.example",
                    "name": f"Member {n}",
                }
                store.add_event(NOTIFICATION_REQUESTED, now, "acme", notice, None)


def sent_count(conn: object) -> int:
    row = conn.execute(  # type: ignore[attr-defined]
        "SELECT count(*) FROM notification_deliveries WHERE status = 'sent'"
    ).fetchone()
    return int(row[0])


def backend_cpu(conn: object, database: str, mine: int) -> dict[int, float]:
    pids = conn.execute(  # type: ignore[attr-defined]
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> %s", (database, mine)
    ).fetchall()
    found = {}
    for (pid,) in pids:
        try:
            found[pid] = sample(pid).cpu_seconds
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def run_case(args: argparse.Namespace, case: str, delay_ms: float) -> Result:
    with (
        tempfile.TemporaryDirectory(prefix="subreq-notifier-bench-") as folder,
        smtp_sink(Path(folder), delay_ms) as sink,
    ):
        with postgres_database(args.postgres_url) as url:
            result = _measure(args, case, url, sink)
        received = sink.status().accepted
    return dataclasses.replace(result, received=received)


def _measure(args: argparse.Namespace, case: str, url: str, sink: SmtpSink) -> Result:
    db = Database(url)
    migrate.upgrade(db)
    request_emails(db, args.emails)
    name = db.url.database or ""
    server = parse_smtp_url(sink.url)
    stop = threading.Event()
    notifier = Notifier(
        args.amqp_url,
        db,
        lambda: SmtpMailer(server),
        parse_mail_from("subreq <no-reply@subreq.invalid>"),
        stop=stop,
        connections=args.connections,
        poll=0.05,
    )
    with pg_connect(args.postgres_url, name) as watch:
        mine = watch.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        pg_before = backend_cpu(watch, name, mine)
        host_before = host_cpu()
        window_before = window_snapshot()
        cpu_before, sink_before = time.process_time(), sink.cpu_seconds()
        started = time.monotonic()
        thread = threading.Thread(target=notifier.run, name="subreq-notifier", daemon=True)
        thread.start()
        deadline = started + args.timeout
        while sent_count(watch) < args.emails:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{case}: not every email was sent in {args.timeout:.0f} s")
            time.sleep(0.01)
        seconds = time.monotonic() - started
        cpu_after, sink_after = time.process_time(), sink.cpu_seconds()
        pg_after = backend_cpu(watch, name, mine)
        busy = host_busy_percent(host_before, host_cpu())
    stop.set()
    thread.join(30)
    db.dispose()
    buckets, count, total = window_snapshot()
    window = Window.between(
        window_before[0], buckets, count - window_before[1], total - window_before[2]
    )
    database_cpu = sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in pg_after.items())
    return Result(
        case,
        args.emails,
        args.connections,
        seconds,
        cpu_after - cpu_before,
        sink_after - sink_before,
        database_cpu,
        host_busy=busy,
        window=window,
    )


def table(results: Sequence[Result]) -> str:
    lines = [
        "| case | emails | connections | seconds | emails/s | CPU ms/email: notifier | sink "
        "| PostgreSQL | machine busy: all / this run | 250 → recorded: mean / p50 / p99 ms |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        lines.append(
            f"| {r.case} | {r.emails} | {r.connections} | {r.seconds:.2f} | {r.rate:,.0f} "
            f"| {r.per_email_ms(r.notifier_cpu):.2f} | {r.per_email_ms(r.sink_cpu):.2f} "
            f"| {r.per_email_ms(r.database_cpu):.2f} | {r.host_busy:.0f}% / {r.ours:.0f}% "
            f"| {_window(r.window)} |"
        )
    return "\n".join(lines)


def _window(window: Window | None) -> str:
    if window is None:
        return "-"
    return f"{1000 * window.mean:.1f} / ≤ {1000 * window.p50:g} / ≤ {1000 * window.p99:g}"


def run(args: argparse.Namespace) -> list[Result]:
    cases = [("local sink", 0.0)]
    if args.slow_smtp:
        cases.append((f"sink answering after {args.slow_smtp:g} ms", args.slow_smtp))
    return [run_case(args, case, delay) for case, delay in cases]


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    results = run(args)
    print(table(results))


if __name__ == "__main__":
    main()
