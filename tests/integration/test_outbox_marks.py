"""The relay's marks: every event published once, in id order, and never an event passed
over because a smaller id committed after a bigger one was read."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from workflow.app.outbox import PendingEvent, backlog, relay_batch
from workflow.persistence.database import Database
from workflow.persistence.sqlstore import SqlStore

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def _write_event(db: Database, name: str) -> str:
    with db.store() as store:
        return store.add_event("request.submitted", AT, name, {"name": name})


def _publish_all(db: Database) -> list[str]:
    published: list[str] = []

    def publish(events: Sequence[PendingEvent]) -> None:
        published.extend(e.event_id for e in events)

    while relay_batch(db, publish, limit=2):
        pass
    return published


def test_published_events_are_not_read_again_and_new_ones_follow(database: Database) -> None:
    first = [_write_event(database, f"a{n}") for n in range(3)]
    assert _publish_all(database) == first  # in two batches of at most 2
    assert backlog(database)[0] == 0
    assert _publish_all(database) == []
    later = _write_event(database, "b")
    assert backlog(database)[0] == 1
    assert _publish_all(database) == [later]


def test_a_failed_publish_leaves_the_batch_to_publish_again(database: Database) -> None:
    written = [_write_event(database, f"a{n}") for n in range(2)]

    def refuse(_events: Sequence[PendingEvent]) -> None:
        raise ConnectionError("broker gone")

    with pytest.raises(ConnectionError):
        relay_batch(database, refuse)
    assert backlog(database)[0] == 2
    assert _publish_all(database) == written


@pytest.mark.postgres
def test_an_event_still_to_commit_holds_back_those_written_after_it(
    postgres_database: Database,
) -> None:
    db = postgres_database
    with db.engine.begin() as conn:  # the session's database, emptied of earlier events
        conn.exec_driver_sql("TRUNCATE outbox, outbox_published")
    later: list[str] = []
    writer = threading.Thread(target=lambda: later.append(_write_event(db, "later")))
    with db.transaction() as conn:
        store = SqlStore(db.sql(conn))
        first = store.add_event("request.submitted", AT, "first", {})
        store.finish()  # its id drawn, under the event-order lock; not committed yet
        writer.start()
        writer.join(0.5)
        # The later event waits for the lock rather than committing a bigger id first,
        # which the relay would publish and mark past the first one.
        assert writer.is_alive()
        assert _publish_all(db) == []
    writer.join(10)
    assert not writer.is_alive()
    assert _publish_all(db) == [first, *later]
