"""Fixtures of the notification tests: a real SMTP server, a vhost of their own (so no
other test's notifications reach their queue), and the session's PostgreSQL emptied."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from tests import services
from tests.integration.notifications.support import Queues
from workflow.persistence.database import Database
from workflow.persistence.tables import metadata


@pytest.fixture(scope="package")
def mail_amqp_url() -> Iterator[str]:
    base = os.environ.get("SUBREQ_TEST_AMQP_URL", services.DEFAULT_AMQP_URL)
    with services.rabbitmq_vhost(base) as url:
        yield url


@pytest.fixture
def pg(postgres_database: Database) -> Database:
    with postgres_database.engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(t.name for t in metadata.sorted_tables)))
    return postgres_database


@pytest.fixture
def queues(mail_amqp_url: str) -> Iterator[Queues]:
    found = Queues(mail_amqp_url)
    yield found
    found.close()
