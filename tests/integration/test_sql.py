"""The fixed-text statements of each database (``workflow.persistence.postgres`` and
``.sqlite``) store and read rows exactly as SQLAlchemy does, with awkward strings, and their
errors are translated like SQLAlchemy's (so the R11 race and the retry of transient
failures see them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select

from workflow.errors import Conflict
from workflow.persistence.database import Database
from workflow.persistence.sql import Query
from workflow.persistence.tables import accounts, outbox, processed_commands, requests

AWKWARD = ["plain", 'quote"d', "back\\slash", "comma,brace{}", "NULL", "", " é✓ 'x' "]
AT = datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
LATER = AT + timedelta(days=1)


def _account(account_id: str) -> dict[str, object]:
    return {
        "account_id": account_id,
        "name": f"Name of {account_id}",
        "type": "sales_assisted",
        "allows_subscription_changes": True,
        "currency": "USD",
        "billing_cycle": "monthly",
        "approval_second_above": "1000.00",
        "approval_currency": "USD",
        "created_at": AT,
        "updated_at": AT + timedelta(seconds=1),
    }


def _request(request_id: str, account_id: str, state: str = "pending") -> dict[str, object]:
    return {
        "request_id": request_id,
        "account_id": account_id,
        "requester_id": "admin",
        "state": state,
        "changes": [{"type": "add_seats", "product": "support", "quantity": 1}],
        "note": 'a "note"\nwith lines',
        "summary": {"total": "115.00", "lines": [], "nested": {"at": "x"}},
        "created_at": AT,
        "decided_at": None,
        "decided_by": None,
        "comment": None,
        "notified": ["owner"],
        "reminded_at": None,
        "reminders": 0,
        "warned_at": None,
        "escalated_at": None,
    }


def test_rows_written_raw_read_back_through_sqlalchemy_and_raw(database: Database) -> None:
    with database.transaction() as conn:
        sql = database.sql(conn)
        sql.insert(accounts, [_account(a) for a in AWKWARD])
        sql.insert(requests, [_request(f"r-{i}", a) for i, a in enumerate(AWKWARD)])
    with database.transaction() as conn:
        stored = {r.account_id: r._asdict() for r in conn.execute(select(accounts))}
        assert set(stored) == set(AWKWARD)
        assert stored['quote"d'] == _account('quote"d')
        through_sa = {r.request_id: r._asdict() for r in conn.execute(select(requests))}
        assert through_sa["r-1"] == _request("r-1", 'quote"d')
        sql = database.sql(conn)
        where, param = sql.among("account_id", AWKWARD[1:4])
        raw = sql.select(accounts, where, [param], suffix=" ORDER BY account_id")
        assert raw == sorted((_account(a) for a in AWKWARD[1:4]), key=lambda r: r["account_id"])
        where, param = sql.among("request_id", ["r-0", "r-6", "missing"])
        both = sql.select_all(
            [
                Query(requests, where, [param], suffix=" ORDER BY request_id"),
                Query(accounts, f"account_id = {sql.mark}", ["NULL"]),
            ]
        )
        assert both[0] == [_request("r-0", "plain"), _request("r-6", " é✓ 'x' ")]
        assert both[1] == [_account("NULL")]


def test_update_and_delete_by_keys(database: Database) -> None:
    with database.transaction() as conn:
        sql = database.sql(conn)
        sql.insert(accounts, [_account(a) for a in AWKWARD])
        with sql.deferred():
            sql.update(
                accounts,
                "account_id",
                ("name", "updated_at"),
                [{"account_id": 'quote"d', "name": "renamed", "updated_at": LATER}],
            )
            sql.delete_keys(accounts, ("account_id",), [("NULL",), ("",)])
    with database.transaction() as conn:
        rows = {r.account_id: r for r in conn.execute(select(accounts))}
        assert set(rows) == set(AWKWARD) - {"NULL", ""}
        assert rows['quote"d'].name == "renamed"
        assert rows['quote"d'].updated_at == LATER
        assert rows["plain"].name == "Name of plain"


def test_autoincrement_ids_are_left_to_the_database_and_ids_select_by_number(
    database: Database,
) -> None:
    event = {
        "type": "request.submitted",
        "account_id": "a",
        "request_id": None,
        "payload": '{"x": "\\"quoted\\""}',
        "created_at": AT,
    }
    with database.transaction() as conn:
        sql = database.sql(conn)
        sql.insert(outbox, [event | {"event_id": f"e-{i}"} for i in range(3)])
        ids = [r["id"] for r in sql.select(outbox, "1 = 1", [], names=["id"])]
        assert len(set(ids)) == 3
        where, param = sql.among("id", ids[:2])
        sql.update_where(outbox, {"traceparent": "traced"}, where, [param])
    with database.transaction() as conn:
        traced = conn.execute(select(outbox.c.event_id, outbox.c.traceparent)).all()
        assert sorted(traced) == [("e-0", "traced"), ("e-1", "traced"), ("e-2", None)]
        assert conn.execute(select(outbox.c.payload)).scalars().first() == event["payload"]


def test_a_duplicate_key_in_a_deferred_flush_is_a_conflict(
    database: Database,
) -> None:
    row = {"key": "id:k", "command": "request.submit", "reply": "{}", "processed_at": AT}
    with database.transaction() as conn:
        conn.execute(insert(processed_commands).values(**row))

    def flush_with_a_duplicate() -> None:
        with database.transaction() as conn:
            sql = database.sql(conn)
            with sql.deferred():
                sql.insert(accounts, [_account("fine")])
                sql.insert(processed_commands, [row])

    with pytest.raises(Conflict) as raised:
        flush_with_a_duplicate()
    assert not raised.value.one_pending
    with database.transaction() as conn:  # nothing of the failed transaction stayed
        assert conn.execute(select(accounts)).all() == []
        assert len(conn.execute(select(processed_commands)).all()) == 1
