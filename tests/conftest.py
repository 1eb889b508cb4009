"""Fixtures shared by the whole test suite.

Service fixtures are session-scoped: one fresh PostgreSQL database and one fresh RabbitMQ
vhost per test session, removed at the end. See ``tests/services.py`` for the policy when a
server is unreachable (fail under CI=true, else Docker fallback, else skip).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once
from sqlalchemy import text

from tests import services
from tests.integration.notifications.smtp import SmtpServer
from workflow.app.service import CommandService
from workflow.domain.catalog import Catalog, load_catalog
from workflow.persistence.database import Database
from workflow.persistence.migrate import upgrade
from workflow.persistence.tables import metadata

# --- services ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL (``postgresql+psycopg://``) of a fresh, empty database."""
    base = os.environ.get("SUBREQ_TEST_DATABASE_URL", services.DEFAULT_DATABASE_URL)
    with services.postgres_database(base) as url:
        yield url


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """AMQP URL of a fresh vhost on which the user has full permissions."""
    base = os.environ.get("SUBREQ_TEST_AMQP_URL", services.DEFAULT_AMQP_URL)
    with services.rabbitmq_vhost(base) as url:
        yield url


# --- databases for the workflow ---------------------------------------------------------


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def postgres_database(postgres_url: str) -> Iterator[Database]:
    """The session's PostgreSQL database, migrated once."""
    db = Database(postgres_url)
    upgrade(db)
    yield db
    db.dispose()


def _empty(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(t.name for t in metadata.sorted_tables)))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty, migrated database of each kind: a new SQLite file, or the session's
    PostgreSQL database emptied."""
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'subreq.db'}")
        upgrade(db)
        yield db
        db.dispose()
    else:
        db = request.getfixturevalue("postgres_database")
        _empty(db)
        yield db


class Clock:
    """A clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(database: Database, catalog: Catalog, clock: Clock) -> CommandService:
    return CommandService(database, catalog, clock=clock)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on localhost that keeps what it receives."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The OpenTelemetry SDK installed for this test only, recording into memory; the
    global provider is put back afterwards, so other tests run with tracing off."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    trace._TRACER_PROVIDER = None
    trace._TRACER_PROVIDER_SET_ONCE = Once()
