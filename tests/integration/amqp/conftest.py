"""Fixtures of the end-to-end suite: the session's vhost cleaned per test, a plain client,
the session's PostgreSQL database emptied, and ``subreq worker`` processes that never
outlive their test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.integration.amqp.support import Broker, RawClient, WorkerProcess
from workflow.persistence.database import Database
from workflow.persistence.tables import metadata


@pytest.fixture
def broker(amqp_url: str) -> Iterator[Broker]:
    """The vhost is shared by the session: each test starts with empty command queues."""
    inspector = Broker(amqp_url)
    inspector.purge()
    yield inspector
    inspector.close()


@pytest.fixture
def client(amqp_url: str, broker: Broker) -> Iterator[RawClient]:
    raw = RawClient(amqp_url)
    yield raw
    raw.close()


@pytest.fixture
def pg(postgres_database: Database) -> Database:
    """The session's migrated PostgreSQL database, emptied."""
    with postgres_database.engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(t.name for t in metadata.sorted_tables)))
    return postgres_database


SpawnWorker = Callable[..., WorkerProcess]


@pytest.fixture
def spawn_worker(amqp_url: str, broker: Broker, tmp_path: Path) -> Iterator[SpawnWorker]:
    """Start ``subreq worker`` processes; every one is killed and reaped at teardown, and
    its log printed (pytest shows it when the test failed)."""
    started: list[WorkerProcess] = []

    def spawn(database_url: str, *args: str, name: str | None = None) -> WorkerProcess:
        process = WorkerProcess(
            amqp_url, database_url, tmp_path, name or f"worker-{len(started)}", *args
        )
        started.append(process)
        return process.start()

    yield spawn
    for process in started:
        process.kill()
    for process in started:
        print(f"--- {process.name} (pid {process.pid}) log tail ---")
        print(process.log()[-4000:])
