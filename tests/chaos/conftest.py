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

from benchmarks.services import fresh_name
from tests import services
from tests.chaos import cluster as private_cluster
from tests.chaos import private_postgres as private_pg
from tests.chaos.cluster import Cluster
from tests.chaos.figures import summary
from tests.chaos.private_postgres import PrivatePostgres, private_postgres
from tests.chaos.sizes import Sizes, load_sizes
from tests.chaos.smtp import MailSink
from tests.chaos.stack import Stack
from workflow.persistence.migrate import upgrade


@pytest.fixture(scope="session")
def sizes() -> Sizes:
    return load_sizes()


@contextlib.contextmanager
def chaos_stack(
    workdir: Path, pg_base: str | None = None, amqp_url: str | None = None
) -> Iterator[Stack]:
    """A fresh vhost and database (on the server of ``pg_base``, by default the shared
    one), migrated, and a place for worker processes; all of it removed at the end, also
    when the scenario failed. ``amqp_url``: a vhost made by the caller (on a private
    cluster, which removes it), instead of one on the shared broker."""
    amqp_base = os.environ.get("SUBREQ_TEST_AMQP_URL", services.DEFAULT_AMQP_URL)
    if pg_base is None:
        pg_base = os.environ.get("SUBREQ_TEST_DATABASE_URL", services.DEFAULT_DATABASE_URL)
    with contextlib.ExitStack() as resources:
        if amqp_url is None:
            amqp_url = resources.enter_context(services.rabbitmq_vhost(amqp_base))
        database_url = resources.enter_context(services.postgres_database(pg_base))
        stack = Stack(amqp_url, database_url, workdir)
        resources.callback(stack.close)
        upgrade(stack.db)
        yield stack


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM (a CI job's timeout) raised as KeyboardInterrupt inside the block, so the
    teardowns still run."""
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """The scenario's stack. SIGTERM (a CI job's timeout) becomes KeyboardInterrupt while
    it lives, so the teardown still runs: no worker, vhost or database outlives it."""
    with interruptible(), chaos_stack(tmp_path) as made:
        yield made


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A private three-node RabbitMQ cluster for the scenarios of one module; its nodes,
    folders and processes removed at the end, whatever happened (see ``cluster.py``)."""
    problem = private_cluster.available()
    if problem:
        services.service_unavailable("a private RabbitMQ cluster", problem)
        pytest.skip(problem)  # Docker is no help here
    failed = request.session.testsfailed
    with interruptible(), Cluster() as made:
        yield made
        made.keep_logs = request.session.testsfailed > failed  # to read what went wrong


@pytest.fixture
def cluster_stack(cluster: Cluster, tmp_path: Path) -> Iterator[Stack]:
    """A scenario's stack on the private cluster: a vhost of its own there (every node's
    address in its URL, node 1 first) and a database on the shared server."""
    vhost = fresh_name(services.NAME_PREFIX)
    cluster.add_vhost(vhost)
    try:
        with interruptible(), chaos_stack(tmp_path, amqp_url=cluster.url(vhost)) as made:
            yield made
    finally:
        with contextlib.suppress(Exception):  # gone with the cluster anyway
            cluster.delete_vhost(vhost)


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[tuple[Stack, PrivatePostgres]]:
    """A scenario's stack whose database lives on a PostgreSQL server of its own, which
    the scenario may crash and restart (the shared server is never touched). The server
    is stopped and its folder removed at the end, whatever happened."""
    problem = private_pg.available()
    if problem:
        services.service_unavailable("a private PostgreSQL server", problem)
        pytest.skip(problem)
    with interruptible(), private_postgres() as server, chaos_stack(tmp_path, server.url) as made:
        yield made, server


@pytest.fixture
def sink() -> Iterator[MailSink]:
    server = MailSink()
    server.start()
    yield server
    server.stop()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    summary(terminalreporter, config)
