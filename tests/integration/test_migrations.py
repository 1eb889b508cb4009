"""The Alembic migrations build exactly the schema the code declares."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from tests import services
from workflow.contract.examples import EVENT_EXAMPLES
from workflow.notifications import deliveries
from workflow.persistence.database import Database
from workflow.persistence.migrate import current_revision, downgrade, head_revision, upgrade
from workflow.persistence.tables import metadata

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_migrated_schema_matches_the_tables(database: Database) -> None:
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert current_revision(database) == head_revision(database)


def test_upgrade_is_idempotent(database: Database) -> None:
    upgrade(database)
    assert current_revision(database) == head_revision(database)


def test_0006_adopts_notifications_the_queue_fed_notifier_had_not_taken_on(
    tmp_path: Path,
) -> None:
    """Upgrading with events still in the retired queue loses no email: each
    ``notification.requested`` without a delivery record becomes a pending one, and the
    old notifier's claims are leased for its claim timeout."""
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(db, "0004")
    data = copy.deepcopy(EVENT_EXAMPLES["notification.requested"]["data"])
    created = "2026-01-05 09:00:00.000000"
    claimed = "2026-01-05 09:01:00.000000"
    with db.engine.begin() as conn:
        for n, notification_id in enumerate(("waiting", "claimed")):
            event = {
                "event_id": f"e-{n}",
                "type": "notification.requested",
                "account_id": "acme",
                "request_id": "r-1",
                "data": {**data, "notification_id": notification_id},
            }
            conn.execute(
                text(
                    "INSERT INTO outbox (event_id, type, account_id, request_id, payload, "
                    "created_at, traceparent) VALUES (:e, 'notification.requested', 'acme', "
                    "'r-1', :p, :at, :tp)"
                ),
                {"e": f"e-{n}", "p": json.dumps(event), "at": created, "tp": TRACEPARENT},
            )
        conn.execute(
            text(
                "INSERT INTO notification_deliveries (notification_id, template, locale, "
                "recipient_email, status, attempts, claim_token, claimed_at, created_at, "
                "updated_at) VALUES ('claimed', 't', 'en', 'o@acme.example', 'sending', 1, "
                "'tok', :at, :at, :at)"
            ),
            {"at": claimed},
        )
    upgrade(db, "0006")
    with db.engine.connect() as conn:
        found = conn.execute(text("SELECT * FROM notification_deliveries")).mappings()
        rows = {r["notification_id"]: r for r in found}
    db.dispose()
    waiting, old_claim = rows["waiting"], rows["claimed"]
    assert (waiting["status"], waiting["attempts"]) == ("pending", 0)
    assert json.loads(waiting["context"]) == data["context"]
    assert waiting["recipient_email"] == data["recipient"]["email"]
    assert waiting["traceparent"] == TRACEPARENT
    assert str(waiting["due_at"])[:19] == str(waiting["created_at"])[:19] == "2026-01-05 09:00:00"
    assert old_claim["status"] == "sending"
    assert str(old_claim["due_at"])[:19] == "2026-01-05 09:06:00"
    assert len(rows) == 2


DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextlib.contextmanager
def database_at(kind: str, tmp_path: Path, revision: str) -> Iterator[Database]:
    """A new database of ``kind`` migrated up to ``revision`` only."""
    with contextlib.ExitStack() as stack:
        if kind == "sqlite":
            url = f"sqlite:///{tmp_path / 'old.db'}"
        else:
            base = os.environ.get("SUBREQ_TEST_DATABASE_URL", services.DEFAULT_DATABASE_URL)
            url = stack.enter_context(services.postgres_database(base))
        db = Database(url)
        stack.callback(db.dispose)
        upgrade(db, revision)
        yield db


@pytest.fixture(params=DATABASES)
def at_0004(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with database_at(request.param, tmp_path, "0004") as db:
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
    old_outbox = sa.table("outbox", *(sa.column(c) for c in _old_event(0, True)), sa.column("id"))
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


@pytest.fixture(params=DATABASES)
def at_0007(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with database_at(request.param, tmp_path, "0007") as db:
        yield db


def _record_0007(notification_id: str, event_id: str, **values: object) -> dict[str, object]:
    """A delivery record as revision 0007 wrote it: a copy of its event's data."""
    data = EVENT_EXAMPLES["notification.requested"]["data"]
    return {
        "notification_id": notification_id,
        "event_id": event_id,
        "account_id": "acme",
        "request_id": "r-1",
        "template": data["template"],
        "locale": data["locale"],
        "recipient_id": "u-1",
        "recipient_email": "ann@acme.example",
        "recipient_name": "Ann",
        "subject": "Old subject",
        "status": "pending",
        "attempts": 0,
        "created_at": datetime(2026, 1, 5, 9, 0),
        "updated_at": datetime(2026, 1, 5, 9, 0),
        "traceparent": TRACEPARENT,
        "context": json.dumps(data["context"]),
        "due_at": datetime(2026, 1, 5, 9, 0),
        **values,
    }


def test_0008_records_refer_to_their_events_and_orphans_keep_theirs(at_0007: Database) -> None:
    """Each record gets its event's outbox id; one whose event was pruned keeps the event,
    rebuilt from its columns: both are still sent with what the event says."""
    db = at_0007
    data = copy.deepcopy(EVENT_EXAMPLES["notification.requested"]["data"])
    event = {
        "event_id": "e-kept",
        "type": "notification.requested",
        "occurred_at": "2026-01-05T09:00:00Z",
        "account_id": "acme",
        "request_id": "r-1",
        "data": {**data, "notification_id": "kept"},
    }
    columns = _record_0007("x", "x").keys()
    old_deliveries = sa.table("notification_deliveries", *(sa.column(c) for c in columns))
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO outbox (event_id, type, account_id, request_id, payload, "
                "created_at, traceparent) VALUES ('e-other', 'request.submitted', 'acme', "
                "'r-1', '{}', :at, NULL), ('e-kept', 'notification.requested', 'acme', "
                "'r-1', :p, :at, :tp)"
            ),
            {"p": json.dumps(event), "at": datetime(2026, 1, 5, 9, 0), "tp": TRACEPARENT},
        )
        conn.execute(
            sa.insert(old_deliveries),
            [_record_0007("kept", "e-kept"), _record_0007("orphan", "e-pruned")],
        )
        kept_id = conn.execute(text("SELECT id FROM outbox WHERE event_id = 'e-kept'")).scalar()
    upgrade(db)

    with db.engine.connect() as conn:
        names = {c["name"] for c in sa.inspect(conn).get_columns("notification_deliveries")}
        refs = dict(
            conn.execute(
                text("SELECT notification_id, outbox_id FROM notification_deliveries")
            ).all()
        )
        stored = dict(
            conn.execute(text("SELECT notification_id, event FROM notification_deliveries")).all()
        )
    assert {"context", "subject", "recipient_name", "traceparent", "event_id"}.isdisjoint(names)
    assert refs == {"kept": kept_id, "orphan": None}
    assert stored["kept"] is None
    assert json.loads(stored["orphan"])["occurred_at"] == "2026-01-05T09:00:00Z"
    now = datetime(2026, 1, 5, 9, 1, tzinfo=UTC)
    claimed = deliveries.exchange(db, [], now, want=10, lease=timedelta(minutes=5)).claimed
    notices = {c.notice.notification_id: c for c in claimed}
    assert set(notices) == {"kept", "orphan"}
    kept, orphan = notices["kept"].notice, notices["orphan"].notice
    # The kept record is what its event says; the orphan what its columns said.
    assert (kept.event_id, kept.subject, kept.context) == (
        "e-kept",
        data["subject"],
        data["context"],
    )
    assert notices["kept"].traceparent == TRACEPARENT
    assert (orphan.event_id, orphan.subject, orphan.name) == ("e-pruned", "Old subject", "Ann")
    assert (orphan.account_id, orphan.request_id, orphan.context) == (
        "acme",
        "r-1",
        data["context"],
    )

    downgrade(db, "0007")
    with db.engine.connect() as conn:
        back = conn.execute(
            text("SELECT notification_id, subject, recipient_name FROM notification_deliveries")
        ).all()
    assert sorted(tuple(r) for r in back) == [
        ("kept", data["subject"], data["recipient"]["name"]),
        ("orphan", "Old subject", "Ann"),
    ]


@pytest.fixture(params=DATABASES)
def at_0008(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with database_at(request.param, tmp_path, "0008") as db:
        yield db


def test_0009_counts_the_one_reminder_a_request_already_had(at_0008: Database) -> None:
    """Before R20 a request had one reminder at most: a reminded one has had them all, so
    the sweeper sends it no other (with SUBREQ_REMINDERS_MAX at its default)."""
    db = at_0008
    at = datetime(2026, 1, 5, 9, 0)
    with db.engine.begin() as conn:
        for account_id, request_id, reminded in (
            ("a", "r-new", None),
            ("b", "r-reminded", at + timedelta(days=3)),
        ):
            conn.execute(
                text(
                    "INSERT INTO accounts (account_id, name, type, allows_subscription_changes, "
                    "created_at, updated_at) VALUES (:a, 'A', 'sales_assisted', true, :at, :at)"
                ),
                {"a": account_id, "at": at},
            )
            conn.execute(
                text(
                    "INSERT INTO requests (request_id, account_id, requester_id, state, "
                    "changes, summary, created_at, notified, reminded_at) VALUES (:r, :a, "
                    "'adam', 'pending', '[]', '{}', :at, '[]', :reminded)"
                ),
                {"r": request_id, "a": account_id, "at": at, "reminded": reminded},
            )
    upgrade(db)
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT request_id, reminders, warned_at, escalated_at FROM requests "
                "ORDER BY request_id"
            )
        ).all()
    assert [tuple(r) for r in rows] == [("r-new", 0, None, None), ("r-reminded", 1, None, None)]
    downgrade(db, "0008")
    with db.engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("requests")}
    assert not columns & {"reminders", "warned_at", "escalated_at"}
    assert "reminded_at" in columns


@pytest.fixture(params=DATABASES)
def at_0009(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with database_at(request.param, tmp_path, "0009") as db:
        yield db


def test_0010_accounts_get_no_threshold_and_keep_everything_else(at_0009: Database) -> None:
    """Accounts from before R23 need one decider, as they did; a downgrade drops the
    threshold and keeps the account."""
    db = at_0009
    at = datetime(2026, 1, 5, 9, 0)
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO accounts (account_id, name, type, allows_subscription_changes, "
                "currency, billing_cycle, created_at, updated_at) VALUES ('acme', 'Acme', "
                "'sales_assisted', :yes, 'USD', 'monthly', :at, :at)"
            ),
            {"yes": True, "at": at},
        )
    upgrade(db)
    with db.engine.begin() as conn:
        row = conn.execute(text("SELECT * FROM accounts")).mappings().one()
        assert (row["approval_second_above"], row["approval_currency"]) == (None, None)
        assert (row["name"], row["currency"]) == ("Acme", "USD")
        conn.execute(
            text("UPDATE accounts SET approval_second_above = '1000.00', approval_currency = 'USD'")
        )
    downgrade(db, "0009")
    with db.engine.connect() as conn:
        names = {c["name"] for c in sa.inspect(conn).get_columns("accounts")}
        kept = conn.execute(text("SELECT account_id, currency FROM accounts")).all()
    assert {"approval_second_above", "approval_currency"}.isdisjoint(names)
    assert [tuple(r) for r in kept] == [("acme", "USD")]
