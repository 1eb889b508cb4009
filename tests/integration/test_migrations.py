"""The Alembic migrations build exactly the schema the code declares."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tests import services
from workflow.persistence.database import Database
from workflow.persistence.migrate import current_revision, downgrade, head_revision, upgrade
from workflow.persistence.tables import metadata


def test_migrated_schema_matches_the_tables(database: Database) -> None:
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert current_revision(database) == head_revision(database)


def test_upgrade_is_idempotent(database: Database) -> None:
    upgrade(database)
    assert current_revision(database) == head_revision(database)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def at_0004(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A new database of each kind migrated up to revision 0004 only."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'old.db'}"
        else:
            base = os.environ.get("SUBREQ_TEST_DATABASE_URL", services.DEFAULT_DATABASE_URL)
            url = stack.enter_context(services.postgres_database(base))
        db = Database(url)
        stack.callback(db.dispose)
        upgrade(db, "0004")
        yield db


def _old_event(n: int, published: bool) -> dict[str, object]:
    return {
        "event_id": f"e-{n}",
        "type": "request.submitted",
        "account_id": "a",
        "payload": "{}",
        "created_at": datetime(2026, 1, 5, 9, n),
        "published_at": datetime(2026, 1, 5, 10, n) if published else None,
    }


def test_0005_marks_what_was_published_up_to_the_first_event_still_waiting(
    at_0004: Database,
) -> None:
    old_outbox = sa.table(
        "outbox", *(sa.column(c) for c in _old_event(0, True)), sa.column("id")
    )
    with at_0004.engine.begin() as conn:
        conn.execute(
            sa.insert(old_outbox),
            [_old_event(1, True), _old_event(2, True), _old_event(3, False), _old_event(4, True)],
        )
    upgrade(at_0004)

    with at_0004.store(lock=False) as store:
        # Events 1 and 2 stay published; 3 waits, and 4 is published again after it.
        assert store.outbox.backlog()[0] == 2
        assert [e.event_id for e in store.outbox.unpublished(10)] == ["e-3", "e-4"]
    with at_0004.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("outbox")}
    assert "published_at" not in columns


def test_0005_downgrades_to_published_times_per_event(at_0004: Database) -> None:
    upgrade(at_0004)
    with at_0004.store() as store:
        for n in range(3):
            store.add_event("request.submitted", datetime(2026, 1, 5, 9, n, tzinfo=UTC), "a", {})
    with at_0004.store() as store:
        first = store.outbox.unpublished(2)
        store.outbox.mark_published(first[-1].id, datetime(2026, 1, 5, 10, 0, tzinfo=UTC))

    downgrade(at_0004, "0004")

    with at_0004.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT published_at FROM outbox ORDER BY id")).scalars()
        published = [None if v is None else str(v)[:16] for v in rows]
    assert published == ["2026-01-05 10:00", "2026-01-05 10:00", None]
