"""The Alembic migrations build exactly the schema the code declares."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from workflow.contract.examples import EVENT_EXAMPLES
from workflow.persistence.database import Database
from workflow.persistence.migrate import current_revision, head_revision, upgrade
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
    upgrade(db)
    with db.store(lock=False) as store:
        rows = {r["notification_id"]: r for r in store.deliveries.recent(None, 10)}
    db.dispose()
    waiting, old_claim = rows["waiting"], rows["claimed"]
    assert (waiting["status"], waiting["attempts"]) == ("pending", 0)
    assert waiting["context"] == data["context"]
    assert waiting["recipient_email"] == data["recipient"]["email"]
    assert waiting["traceparent"] == TRACEPARENT
    assert waiting["due_at"] == waiting["created_at"] == datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    assert old_claim["status"] == "sending"
    assert old_claim["due_at"] == datetime(2026, 1, 5, 9, 6, tzinfo=UTC)
    assert len(rows) == 2
