"""Fixtures of the fault-injection scenarios.

Each scenario gets a vhost and a database of its own (the same ``tests.services``
helpers as the session's, so the same names and the same removal), because the faults
act on them: the broker closes every connection of *this* vhost, PostgreSQL terminates
the backends of *this* database. Teardown runs in reverse order whatever happened:
every worker process killed and reaped, then the database dropped (``WITH (FORCE)``),
then the vhost deleted with everything in it.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import services
from tests.chaos.figures import summary
from tests.chaos.private_postgres import PrivatePostgres, available, private_postgres
from tests.chaos.sizes import Sizes, load_sizes
from tests.chaos.smtp import MailSink
from tests.chaos.stack import Stack
from workflow.persistence.migrate import upgrade


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    return load_sizes()


@contextlib.contextmanager
def chaos_stack(workdir: Path, pg_base: str | None = None) -> Iterator[Stack]:
    """A fresh vhost and database (on the server of ``pg_base``, by default the shared
    one), migrated, and a place for worker processes; all of it removed at the end, also
    when the scenario failed."""
    amqp_base = os.environ.get("SUBREQ_TEST_AMQP_URL", services.DEFAULT_AMQP_URL)
    if pg_base is None:
        pg_base = os.environ.get("SUBREQ_TEST_DATABASE_URL", services.DEFAULT_DATABASE_URL)
    with contextlib.ExitStack() as resources:
        amqp_url = resources.enter_context(services.rabbitmq_vhost(amqp_base))
        database_url = resources.enter_context(services.postgres_database(pg_base))
        stack = Stack(amqp_url, database_url, workdir)
        resources.callback(stack.close)
        upgrade(stack.db)
        yield stack


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """The scenario's stack. SIGTERM (a CI job's timeout) becomes KeyboardInterrupt while
    it lives, so the teardown still runs: no worker, vhost or database outlives it."""
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        with chaos_stack(tmp_path) as made:
            yield made
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[tuple[Stack, PrivatePostgres]]:
    """A scenario's stack whose database lives on a PostgreSQL server of its own, which
    the scenario may crash and restart (the shared server is never touched). The server
    is stopped and its folder removed at the end, whatever happened."""
    problem = available()
    if problem:
        services.service_unavailable("a private PostgreSQL server", problem)
        pytest.skip(problem)
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        with private_postgres() as server, chaos_stack(tmp_path, server.url) as made:
            yield made, server
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def sink() -> Iterator[MailSink]:
    server = MailSink()
    server.start()
    yield server
    server.stop()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    summary(terminalreporter, config)
