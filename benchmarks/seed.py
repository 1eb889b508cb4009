"""Untimed set-up of a subreq database: schema, accounts with an owner and an admin, and
optionally a large history of decided requests (for the "cost flat as data grows" check).

Accounts go through ``CommandService.handle_batch``, the same code path as the worker,
so they are exactly what the contract's ``account.upsert``/``member.upsert`` produce.
Historic rows are bulk-loaded (COPY on PostgreSQL, executemany on SQLite) from templates
captured by running one real submit and approve on a scratch SQLite database, so their
shapes and sizes are those the service writes: the rows are read back raw (JSON as text,
times as ``YYYY-MM-DD HH:MM:SS.ffffff`` naive UTC, which both databases parse) and only
ids, accounts, actors and times vary.
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.services import pg_connect
from workflow.app.service import CommandService
from workflow.domain.catalog import load_catalog
from workflow.persistence.database import Database
from workflow.persistence.migrate import upgrade

log = logging.getLogger(__name__)

SEED_CHUNK = 600
"""Commands per seeding transaction (200 accounts with their two members)."""

HISTORY_TABLES = ("requests", "request_transitions", "outbox")
HISTORIC_EVENTS = ("request.submitted", "request.approved")  # per request, both published


def account_ids(count: int) -> list[str]:
    return [f"acct-{i:05d}" for i in range(count)]


def owner_of(account_id: str) -> str:
    return f"{account_id}-owner"


def admin_of(account_id: str) -> str:
    return f"{account_id}-admin"


def account_body(account_id: str) -> dict[str, Any]:
    """Sales-assisted, allows changes, Support Professional with 10 seats, USD monthly."""
    return {
        "account_id": account_id,
        "name": f"Account {account_id}",
        "type": "sales_assisted",
        "allows_subscription_changes": True,
        "subscription": {
            "currency": "USD",
            "billing_cycle": "monthly",
            "products": [{"product": "support", "plan": "professional", "seats": 10}],
        },
    }


def member_body(account_id: str, user_id: str, role: str) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "user_id": user_id,
        "name": user_id.replace("-", " ").title(),
        "email": f"{user_id}@{account_id}.example",
        "role": role,
        "locale": "en",
    }


def seed_commands(account_id: str) -> list[tuple[str, bytes, None]]:
    return [
        ("account.upsert", orjson.dumps(account_body(account_id)), None),
        (
            "member.upsert",
            orjson.dumps(member_body(account_id, owner_of(account_id), "owner")),
            None,
        ),
        (
            "member.upsert",
            orjson.dumps(member_body(account_id, admin_of(account_id), "admin")),
            None,
        ),
    ]


def prepare_subreq(url: str, accounts: Sequence[str], history: int) -> None:
    """Migrate, seed the accounts, and load ``history`` decided requests."""
    db = Database(url)
    try:
        upgrade(db)
        service = CommandService(db, load_catalog())
        items = [item for account_id in accounts for item in seed_commands(account_id)]
        for start in range(0, len(items), SEED_CHUNK):
            for outcome in service.handle_batch(items[start : start + SEED_CHUNK]):
                reply = outcome.json()
                if not reply.get("ok"):
                    raise RuntimeError(f"seeding failed: {reply}")
        if history:
            load_history(db, accounts, history)
    finally:
        db.dispose()


# --- history ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """One table's row as stored, with the names of its columns (autoincrement id left out)."""

    table: str
    columns: tuple[str, ...]
    values: tuple[Any, ...]

    def filler(self, varying: Sequence[str]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
        """A function putting the ``varying`` columns' values into a copy of the row."""
        positions = [self.columns.index(name) for name in varying]
        base = list(self.values)

        def fill(values: Sequence[Any]) -> tuple[Any, ...]:
            row = base.copy()
            for position, value in zip(positions, values, strict=True):
                row[position] = value
            return tuple(row)

        return fill


def capture_templates() -> dict[str, list[Template]]:
    """The rows one real request leaves, submitted and approved, on a scratch SQLite
    database: one ``requests`` row, two ``request_transitions``, and its two request events."""
    with tempfile.TemporaryDirectory(prefix="subreq-bench-template-") as folder:
        path = Path(folder) / "template.db"
        db = Database(f"sqlite:///{path}")
        try:
            upgrade(db)
            service = CommandService(db, load_catalog())
            account_id = "template"
            for routing_key, body, _ in seed_commands(account_id):
                assert service.handle(routing_key, body).json()["ok"]
            submit = {
                "account_id": account_id,
                "actor_id": admin_of(account_id),
                "changes": [{"type": "add_seats", "product": "support", "quantity": 1}],
            }
            reply = service.handle("request.submit", orjson.dumps(submit), "t-1").json()
            decide = {
                "request_id": reply["result"]["request"]["request_id"],
                "actor_id": owner_of(account_id),
                "decision": "approve",
            }
            assert service.handle("request.decide", orjson.dumps(decide), "t-2").json()["ok"]
        finally:
            db.dispose()
        raw = sqlite3.connect(path)
        try:
            found: dict[str, list[Template]] = {}
            for table in HISTORY_TABLES:
                where = ""
                if table == "outbox":
                    where = " WHERE type IN ({})".format(
                        ", ".join(f"'{t}'" for t in HISTORIC_EVENTS)
                    )
                cursor = raw.execute(f"SELECT * FROM {table}{where} ORDER BY rowid")
                names = [d[0] for d in cursor.description]
                keep = [i for i, name in enumerate(names) if name != "id"]
                found[table] = [
                    Template(table, tuple(names[i] for i in keep), tuple(row[i] for i in keep))
                    for row in cursor.fetchall()
                ]
        finally:
            raw.close()
    if [len(found[t]) for t in HISTORY_TABLES] != [1, 2, len(HISTORIC_EVENTS)]:
        raise RuntimeError(f"unexpected template rows: { {t: len(v) for t, v in found.items()} }")
    return found


class Stamps:
    """Naive UTC text (``YYYY-MM-DD HH:MM:SS.ffffff``), as SQLAlchemy stores times on SQLite
    and PostgreSQL parses them, for whole seconds: cheap enough for millions of rows."""

    def __init__(self) -> None:
        self._days: dict[int, str] = {}

    def __call__(self, epoch: int, fraction: str = "000000") -> str:
        day, second = divmod(epoch, 86400)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = self._days[day] = time.strftime("%Y-%m-%d", time.gmtime(day * 86400))
        hour, rest = divmod(second, 3600)
        return f"{prefix} {hour:02d}:{rest // 60:02d}:{rest % 60:02d}.{fraction}"


def historic_rows(
    templates: dict[str, list[Template]], accounts: Sequence[str], count: int
) -> dict[str, Callable[[], Iterator[tuple[Any, ...]]]]:
    """Per table, a generator of its rows for ``count`` approved requests spread over the
    accounts and the past year (the same ids every call, so the tables agree). Ids are
    well-formed UUIDs numbered from a prefix no random UUID uses in practice."""
    now = int(time.time()) - 2 * 86400
    stamp = Stamps()
    people = {a: (admin_of(a), owner_of(a), orjson.dumps([owner_of(a)]).decode()) for a in accounts}

    def facts(i: int) -> tuple[str, str, str, str, int]:
        """request id, account, admin, owner and submit time of historic request ``i``"""
        account = accounts[i % len(accounts)]
        admin, owner, _ = people[account]
        at = now - (i * 2_654_435_761) % (365 * 86400)  # a fixed pseudo-random past second
        return f"b0b0b0b0-0000-4000-8000-{i:012x}", account, admin, owner, at

    request = templates["requests"][0].filler(
        [
            "request_id",
            "account_id",
            "requester_id",
            "created_at",
            "decided_at",
            "decided_by",
            "notified",
        ]
    )
    steps = [t.filler(["request_id", "actor_id", "at"]) for t in templates["request_transitions"]]
    events = [
        t.filler(["event_id", "account_id", "request_id", "created_at"])
        for t in templates["outbox"]
    ]

    def requests_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(count):
            request_id, account, admin, owner, at = facts(i)
            notified = people[account][2]
            yield request(
                [request_id, account, admin, stamp(at), stamp(at + 3600), owner, notified]
            )

    def transition_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(count):
            request_id, _, admin, owner, at = facts(i)
            yield steps[0]([request_id, admin, stamp(at)])
            yield steps[1]([request_id, owner, stamp(at + 3600)])

    def outbox_rows() -> Iterator[tuple[Any, ...]]:
        for i in range(count):
            request_id, account, _, _, at = facts(i)
            for k, (offset, event) in enumerate(zip((0, 3600), events, strict=True)):
                yield event(
                    [
                        f"e0e0e0e0-0000-4000-8000-{2 * i + k:012x}",
                        account,
                        request_id,
                        stamp(at + offset),
                    ]
                )

    return {
        "requests": requests_rows,
        "request_transitions": transition_rows,
        "outbox": outbox_rows,
    }


MARK_HISTORY_PUBLISHED = (
    "INSERT INTO outbox_published (upto_id, at) SELECT max(id), CURRENT_TIMESTAMP FROM outbox"
)
"""Historic events were published long ago: the relay's mark goes past them (and past the
few events seeding wrote, which no one waits for)."""


def load_history(db: Database, accounts: Sequence[str], count: int) -> None:
    """``count`` approved requests with their history and published events, in one
    transaction (COPY on PostgreSQL, executemany on SQLite)."""
    templates = capture_templates()
    rows = historic_rows(templates, accounts, count)
    columns = {table: templates[table][0].columns for table in HISTORY_TABLES}
    if db.is_postgres:
        with pg_connect(db.url.render_as_string(hide_password=False)) as conn:
            conn.autocommit = False
            # The rows agree by construction: skip the per-row foreign key triggers.
            conn.execute("SET LOCAL session_replication_role = replica")
            with conn.cursor() as cursor:
                for table in HISTORY_TABLES:
                    started = time.perf_counter()
                    statement = f"COPY {table} ({', '.join(columns[table])}) FROM STDIN"
                    with cursor.copy(statement) as copy:
                        for row in rows[table]():
                            copy.write_row(row)
                    log.debug("%s loaded in %.1fs", table, time.perf_counter() - started)
            conn.execute(MARK_HISTORY_PUBLISHED)
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")  # as autovacuum would have done on a real database
        return
    path = db.url.database or ""
    raw = sqlite3.connect(path, timeout=30)
    try:
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=OFF")  # a throw-away database: no fsync while loading
        raw.execute("PRAGMA cache_size=-262144")  # 256 MiB for the index pages
        with raw:  # one transaction
            for table in HISTORY_TABLES:
                marks = ", ".join("?" * len(columns[table]))
                raw.executemany(
                    f"INSERT INTO {table} ({', '.join(columns[table])}) VALUES ({marks})",
                    rows[table](),
                )
            raw.execute(MARK_HISTORY_PUBLISHED)
    finally:
        raw.close()
