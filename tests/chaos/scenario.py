"""One load scenario from start to verdict: seed, start the workers, drive the load while
the faults happen, let everything settle, check, and report the figures."""

from __future__ import annotations

import contextlib
import random
import secrets
import time
from collections.abc import Sequence
from types import TracebackType

import pytest

from consumers.notifier import STARTED
from tests.chaos.checks import Verdict, settle, verify
from tests.chaos.faults import Fault, PendingWatch, WorkerKiller
from tests.chaos.figures import report
from tests.chaos.publisher import ResilientClient
from tests.chaos.sizes import Sizes
from tests.chaos.smtp import MailSink
from tests.chaos.stack import Stack
from tests.chaos.workload import Workload
from tests.integration.helpers import wait_until
from workflow.contract.names import COMMANDS_QUEUE
from workflow.domain.catalog import Catalog

WORKER_FLAGS = ("--prefetch", "50", "--batch", "20")
"""A small prefetch: a killed worker's unacked commands all count a delivery more."""


class LoadScenario:
    def __init__(
        self,
        name: str,
        stack: Stack,
        sink: MailSink,
        sizes: Sizes,
        catalog: Catalog,
        request: pytest.FixtureRequest,
        *,
        quorum: bool = False,
    ) -> None:
        """``quorum``: the harness's reply and event queues are quorum queues (on a
        cluster, so that they survive the node they were declared on)."""
        self.name = name
        self.stack = stack
        self.sink = sink
        self.sizes = sizes
        self.catalog = catalog
        self.request = request
        self.rng = random.Random(f"{sizes.seed}:{name}")
        self.client = ResilientClient(stack.amqp_url, secrets.token_hex(4), quorum=quorum)
        self.watch = PendingWatch(stack.database_url)
        self.worker_count = 0

    def __enter__(self) -> LoadScenario:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _exc: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.watch.stop()
        self.client.close()
        if _exc is not None:
            print(self.stack.logs())

    def start(self, accounts: int, workers: int, env: Sequence[dict[str, str]] = ()) -> list[str]:
        """Seed ``accounts`` accounts, start ``workers`` workers (worker i with ``env[i]``
        too, when given), wait until all consume."""
        account_ids = [f"acct-{i}" for i in range(accounts)]
        self.stack.seed(self.catalog, account_ids)
        self.worker_count = workers
        for i in range(workers):
            more = env[i] if i < len(env) else {}
            self.stack.spawn(
                f"worker-{i}", *WORKER_FLAGS, env={"SUBREQ_SMTP_URL": self.sink.url, **more}
            )
        wait_until(
            lambda: (
                self.client.queue_state(COMMANDS_QUEUE)[1] == workers
                and all(STARTED in w.log() for w in self.stack.workers)
            ),
            timeout=60,
            what=f"{workers} workers to consume",
        )
        return account_ids

    def run(
        self,
        account_ids: Sequence[str],
        commands: int,
        faults: Sequence[Fault],
        *,
        seconds: float | None = None,
    ) -> Verdict:
        """The load (over ``seconds``, default the sizes'), the faults, and the verdict."""
        started = time.monotonic()
        self.watch.start()
        seconds = self.sizes.seconds if seconds is None else seconds
        load = Workload(self.client, account_ids, commands, seconds, self.rng)
        load.run(faults, settle=self.sizes.settle)
        kill_times = next((f.times for f in faults if isinstance(f, WorkerKiller)), [])
        settle(self.stack, self.sizes.settle)
        self.watch.stop()
        verdict = verify(
            self.name,
            self.stack,
            load,
            self.client,
            self.sink,
            self.watch,
            faults={f.name: f.count for f in faults},
            kill_times=kill_times,
        )
        for fault in faults:  # what a fault measured about itself
            verdict.figures.update(getattr(fault, "figures", {}))
        self._check_workers(verdict, killed=bool(kill_times))
        verdict.figures["load_seconds"] = round(load.issue_seconds, 1)
        verdict.figures["seconds"] = round(time.monotonic() - started, 1)
        verdict.figures["seed"] = self.sizes.seed
        report(self.request, self.name, verdict.figures)
        return verdict

    def _check_workers(self, verdict: Verdict, *, killed: bool) -> None:
        """Every worker still running; without kills, the very processes started first
        (they recovered by themselves), each consuming again."""
        dead = [w.name for w in self.stack.workers if not w.alive()]
        if dead:
            verdict.problem("workers died", dead)
        if not killed:
            restarted = [w.name for w in self.stack.workers if len(w.incarnations) > 1]
            if restarted:
                verdict.problem("workers were restarted", restarted)
        want = self.worker_count

        def consumers() -> int:  # the notifiers hold no broker connection to count
            return int(self.client.queue_state(COMMANDS_QUEUE)[1])

        deadline = time.monotonic() + 30  # a reconnect may still be backing off
        while consumers() != want and time.monotonic() < deadline:
            time.sleep(0.2)
        found = consumers()
        if found != want:
            verdict.problem(f"command consumers 30 s after the load: {found}")


def assert_kept(verdict: Verdict, stack: Stack) -> None:
    """Fail with every problem found (the figures were reported already)."""
    if verdict.problems:
        with contextlib.suppress(Exception):
            print(stack.logs())
        raise AssertionError(
            f"{verdict.scenario}: {len(verdict.problems)} promise(s) broken:\n- "
            + "\n- ".join(verdict.problems)
        )
