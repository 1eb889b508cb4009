"""Engine set-up and transactions, with the SQLite recipe that makes it behave like a server.

SQLite gets WAL and ``BEGIN IMMEDIATE`` so that a transaction takes the write
lock at its start: two processes then serialise instead of failing at commit,
which is what the per-account row lock gives on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from workflow.errors import (
    ConfigurationError,
    Conflict,
    DatabaseUnavailable,
    SchemaMissing,
    TransientError,
)
from workflow.persistence.deliveries import DeliveryRecords
from workflow.persistence.postgres import PostgresSql
from workflow.persistence.sql import Sql
from workflow.persistence.sqlite import SqliteSql
from workflow.persistence.sqlstore import SqlStore
from workflow.telemetry import SpanKind, tracer

# SQLSTATEs for which a retry of the whole transaction is the cure.
RETRYABLE_SQLSTATES = frozenset(
    {
        "40001",
        "40P01",
        "55P03",
        "57P01",
        "57P02",
        "57P03",
        "08000",
        "08001",
        "08003",
        "08004",
        "08006",
    }
)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# JSON columns (changes, summaries, audit details) are on the hot path: orjson, not json.
JSON_CODEC: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": orjson.loads}


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, **JSON_CODEC, **kwargs
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            "PRAGMA busy_timeout=30000",
        ):
            cursor.execute(pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _custom_plans(dbapi_connection: Any, _record: Any) -> None:
    """The batch path's statements keep their text and take arrays of keys, so psycopg
    prepares them; a generic plan cannot know how many keys an array holds and was seen to
    double the time of the batch's reads. A custom plan per execution costs far less."""
    dbapi_connection.execute("SET plan_cache_mode = force_custom_plan")
    dbapi_connection.commit()


class Database:
    """One engine per process; every unit of work runs in :meth:`transaction`."""

    def __init__(self, url: str | URL, *, pool_size: int = 5) -> None:
        try:
            self.url = make_url(url)
        except Exception as exc:  # sqlalchemy raises ArgumentError with its own wording
            raise ConfigurationError(f"SUBREQ_DATABASE_URL is not a database URL: {exc}") from None
        backend = self.url.get_backend_name()
        if backend == "sqlite":
            self.engine = _sqlite_engine(self.url)
        elif backend == "postgresql":
            self.engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                # No ping per checkout (a round trip per transaction): a connection that
                # died with its server fails its first statement, is invalidated, and the
                # caller's retry of the TransientError gets a fresh one.
                **JSON_CODEC,
            )
            # Batched writes: an executemany INSERT becomes a few multi-row statements
            # (compiled once) instead of one round trip per row.
            self.engine.dialect.use_insertmanyvalues_wo_returning = True
            event.listen(self.engine, "connect", _custom_plans)
        else:
            raise ConfigurationError(
                f"SUBREQ_DATABASE_URL: unsupported database {backend!r} (use sqlite or postgresql)"
            )
        self.is_postgres = backend == "postgresql"
        self.sql: type[Sql] = PostgresSql if self.is_postgres else SqliteSql
        self._span_attributes = {
            "db.system.name": backend,
            "db.namespace": self.url.database or "",
            "db.operation.name": "transaction",
        }

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Commit on success, roll back on error; database hiccups become TransientError,
        a unique constraint that another transaction won becomes :class:`Conflict`."""
        try:
            with (
                tracer().start_as_current_span(
                    "transaction", kind=SpanKind.CLIENT, attributes=self._span_attributes
                ),
                self.engine.begin() as conn,
            ):
                yield conn
        except IntegrityError as exc:
            raise Conflict(str(exc.orig), one_pending=_one_pending_violated(exc)) from exc
        except DBAPIError as exc:
            if is_transient(exc):
                raise TransientError(f"database unavailable: {exc.orig}") from exc
            raise

    @contextmanager
    def deliveries(self) -> Iterator[DeliveryRecords]:
        """Delivery record statements that need no transaction around them, each atomic on
        its own: on PostgreSQL each commits by itself (autocommit: no ``BEGIN``, no
        ``COMMIT``, statements sent together in one round trip), which is what the email
        window is made of; on SQLite one transaction."""
        if not self.is_postgres:
            with self.store(lock=False) as store:
                yield store.deliveries
            return
        try:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                yield DeliveryRecords(self.sql(conn))
        except DBAPIError as exc:
            if is_transient(exc):
                raise TransientError(f"database unavailable: {exc.orig}") from exc
            raise

    @contextmanager
    def store(self, *, lock: bool = True) -> Iterator[SqlStore]:
        """One transaction's store; its changes are written when the block ends without
        an error, then committed. ``lock=False`` for reads that must not lock accounts."""
        with self.transaction() as conn:
            store = SqlStore(self.sql(conn), lock=lock)
            yield store
            store.finish()

    def dispose(self) -> None:
        self.engine.dispose()


def _one_pending_violated(exc: IntegrityError) -> bool:
    """The partial unique index of R11, as PostgreSQL and SQLite each name it."""
    text = str(exc.orig)
    return "uq_requests_one_pending" in text or "requests.account_id" in text


def is_transient(exc: DBAPIError) -> bool:
    """Lost connections, deadlocks, serialisation failures, a busy SQLite file: a retry
    may cure them. A missing table or a constraint violation is never transient."""
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate in RETRYABLE_SQLSTATES:
        return True
    if not isinstance(exc, OperationalError):
        return False
    if type(exc.orig).__module__.startswith("psycopg"):
        return sqlstate is None or sqlstate.startswith(("08", "40", "53", "57"))
    message = str(exc.orig).lower()
    return any(word in message for word in ("locked", "busy", "unable to open", "disk i/o"))


UNDEFINED_TABLE = "42P01"  # PostgreSQL's SQLSTATE for a missing table


def describe(db: Database) -> str:
    """The URL as an operator may see it: never with its password."""
    return db.url.render_as_string(hide_password=True)


@contextmanager
def database_errors(db: Database) -> Iterator[None]:
    """Turn "cannot connect" and "no such table" into errors that say what to fix."""
    try:
        yield
    except DatabaseUnavailable:
        raise
    except (DBAPIError, TransientError) as exc:
        # ``Database.transaction`` has already wrapped a transient failure: look beneath.
        cause = exc.__cause__ if isinstance(exc, TransientError) else exc
        if isinstance(cause, DBAPIError) and _missing_table(cause):
            raise SchemaMissing(
                f"the database of SUBREQ_DATABASE_URL ({describe(db)}) has no subreq schema: "
                "run `subreq db upgrade` first"
            ) from None
        if isinstance(exc, DBAPIError) and not isinstance(exc, OperationalError | InterfaceError):
            raise  # a bug, not the environment: the traceback is what a developer needs
        reason = cause.orig if isinstance(cause, DBAPIError) else exc
        raise DatabaseUnavailable(
            # Drivers spread one reason over several lines.
            f"SUBREQ_DATABASE_URL: cannot use {describe(db)}: {' '.join(str(reason).split())}"
        ) from None


def _missing_table(exc: DBAPIError) -> bool:
    if getattr(exc.orig, "sqlstate", None) == UNDEFINED_TABLE:
        return True
    return "no such table" in str(exc.orig).lower()
