"""Fixed-text statements for the batch path, built once per table from the SQLAlchemy tables.

A compiled SQLAlchemy statement costs tens of microseconds per row on the way in and out,
and a multi-row INSERT has a new text for every row count, which the driver parses again,
placeholder by placeholder. Here a statement's text never changes with the batch. On
PostgreSQL the rows of a write travel as one JSON document (``json_populate_recordset``
converts each field to its column's type) and the keys of a read as one array literal
(``= ANY``); on SQLite a write is an ``executemany`` and the keys a JSON array read with
``json_each``. Values are converted the way the tables' column types convert them (naive
UTC times, JSON), so rows written here and rows written through SQLAlchemy are the same.
Statements run through ``Connection.exec_driver_sql`` or, several at once on PostgreSQL,
a psycopg pipeline whose errors are raised as SQLAlchemy's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
import psycopg
from sqlalchemy import JSON, Boolean, Connection, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from workflow.persistence.tables import UTCDateTime

Convert = Callable[[Any], Any]


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None)


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _json_load(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


class Columns:
    """One table's columns on one dialect: how each value goes in and comes out."""

    def __init__(self, table: Table, dialect: Dialect) -> None:
        self.table = table
        self.names = tuple(str(c.name) for c in table.columns)
        self.postgres = dialect.name == "postgresql"
        self.bind: dict[str, Convert] = {}
        self.result: dict[str, Convert] = {}
        for column in table.columns:
            kind = column.type
            if isinstance(kind, UTCDateTime):
                if self.postgres:
                    self.bind[column.name] = _naive_utc
                    self.result[column.name] = _aware
                else:  # SQLite stores text in SQLAlchemy's format: let the type convert it
                    impl = kind.dialect_impl(dialect)
                    bind = impl.bind_processor(dialect)
                    result = impl.result_processor(dialect, None)
                    assert bind is not None
                    assert result is not None
                    self.bind[column.name] = bind
                    self.result[column.name] = result
            elif isinstance(kind, JSON):
                if not self.postgres:  # PostgreSQL takes it nested in the rows' document
                    self.bind[column.name] = _json_text
                self.result[column.name] = _json_load
            elif isinstance(kind, Boolean) and not self.postgres:
                self.result[column.name] = _boolean

    def values(self, row: Mapping[str, Any], names: Sequence[str]) -> list[Any]:
        bind = self.bind
        return [bind[n](row.get(n)) if n in bind else row.get(n) for n in names]

    def document(self, rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> str:
        """PostgreSQL: the rows as one JSON array for ``json_populate_recordset``, which
        converts each field to its column's type on the server."""
        bind = self.bind
        return orjson.dumps(
            [{n: bind[n](r.get(n)) if n in bind else r.get(n) for n in names} for r in rows]
        ).decode()

    def rows(self, names: Sequence[str], records: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        converters = [(i, n, self.result[n]) for i, n in enumerate(names) if n in self.result]
        out = []
        for record in records:
            row = dict(zip(names, record, strict=True))
            for i, name, convert in converters:
                value = record[i]
                if value is not None:
                    row[name] = convert(value)
            out.append(row)
        return out


def _text_array(values: Sequence[str]) -> str:
    """A PostgreSQL array literal: one text parameter is far cheaper to send than a list."""
    quoted = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in quoted) + "}"


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _boolean(value: Any) -> bool:
    return bool(value)


_COLUMNS: dict[tuple[str, str], Columns] = {}


def columns(table: Table, dialect: Dialect) -> Columns:
    found = _COLUMNS.get((table.name, dialect.name))
    if found is None or found.table is not table:
        found = _COLUMNS[(table.name, dialect.name)] = Columns(table, dialect)
    return found


@dataclass(frozen=True, slots=True)
class Query:
    """A SELECT of some of ``table``'s columns, to run alone or with others."""

    table: Table
    where: str
    params: Sequence[Any]
    names: Sequence[str] | None = None
    suffix: str = ""


class RawSql:
    """The batch path's statements on one connection's dialect."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self.postgres = self.dialect.name == "postgresql"
        self._deferred: list[tuple[str, Any]] | None = None

    def _columns(self, table: Table) -> Columns:
        return columns(table, self.dialect)

    def _run(self, sql: str, params: Any) -> None:
        if self._deferred is not None:
            self._deferred.append((sql, params))
        else:
            self.conn.exec_driver_sql(sql, params)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """The writes inside go out together at the end, in order: on PostgreSQL in one
        pipeline, so the whole flush costs one round trip instead of one per statement."""
        self._deferred = []
        try:
            yield
            statements = self._deferred
        finally:
            self._deferred = None
        if self.postgres and len(statements) > 1:
            self._pipeline(statements)
        else:
            for sql, params in statements:
                self.conn.exec_driver_sql(sql, params)

    def _pipeline(self, statements: Sequence[tuple[str, Any]]) -> list[Sequence[Any] | None]:
        """PostgreSQL: send every statement, then read every answer (psycopg pipeline mode).
        Errors come out as SQLAlchemy's, as if the statement had gone through it."""
        driver = self.conn.connection.driver_connection
        assert isinstance(driver, psycopg.Connection)
        cursors: list[psycopg.Cursor[Any]] = []
        current = statements[0]
        try:
            with driver.pipeline():
                for current in statements:
                    cursor = driver.cursor()
                    cursor.execute(current[0], current[1])
                    cursors.append(cursor)
            return [c.fetchall() if c.description is not None else None for c in cursors]
        except psycopg.Error as exc:
            lost = driver.closed or driver.broken
            if lost:
                self.conn.invalidate(exc)
            raise DBAPIError.instance(
                current[0],
                current[1],
                exc,
                psycopg.Error,
                connection_invalidated=lost,
                dialect=self.dialect,
            ) from exc
        finally:
            for cursor in cursors:
                cursor.close()

    # --- reading ---------------------------------------------------------------------------

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        """A condition "``column`` is one of ``values``" whose text does not depend on how
        many values there are, and its parameter."""
        if self.postgres:
            if all(isinstance(v, int) for v in values):
                return f"{column} = ANY(%s::bigint[])", "{" + ",".join(map(str, values)) + "}"
            return f"{column} = ANY(%s::text[])", _text_array(values)
        return f"{column} IN (SELECT value FROM json_each(?))", orjson.dumps(list(values)).decode()

    def select(
        self,
        table: Table,
        where: str,
        params: Sequence[Any],
        *,
        names: Sequence[str] | None = None,
        suffix: str = "",
    ) -> list[dict[str, Any]]:
        """Rows of ``table`` (every column unless ``names``) as dictionaries, values converted
        as the column types would."""
        return self.select_all([Query(table, where, params, names, suffix)])[0]

    def select_all(self, queries: Sequence[Query]) -> list[list[dict[str, Any]]]:
        """Several independent queries; on PostgreSQL in one round trip."""
        statements = []
        shapes = []
        for q in queries:
            cols = self._columns(q.table)
            names = tuple(q.names or cols.names)
            statements.append(
                (
                    f"SELECT {', '.join(names)} FROM {q.table.name} WHERE {q.where}{q.suffix}",
                    tuple(q.params),
                )
            )
            shapes.append((cols, names))
        results: list[Sequence[Any] | None]
        if self.postgres and len(statements) > 1:
            results = self._pipeline(statements)
        else:
            results = [self.conn.exec_driver_sql(sql, p).fetchall() for sql, p in statements]
        return [
            cols.rows(names, records or [])
            for (cols, names), records in zip(shapes, results, strict=True)
        ]

    # --- writing ---------------------------------------------------------------------------

    def insert(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Every row in one statement (PostgreSQL) or one executemany (SQLite); autoincrement
        primary keys are left to the database."""
        if not rows:
            return
        cols = self._columns(table)
        names = [
            str(c.name)
            for c in table.columns
            if not (c.primary_key and c.autoincrement is True and c.name not in rows[0])
        ]
        if self.postgres:
            self._run(_pg_insert(table.name, tuple(names)), (cols.document(rows, names),))
        else:
            marks = ", ".join("?" for _ in names)
            sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
            self._run(sql, [tuple(cols.values(r, names)) for r in rows])

    def update(
        self, table: Table, key: str, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Set ``names`` from each row on the row of ``table`` whose ``key`` matches."""
        if not rows:
            return
        cols = self._columns(table)
        every = [key, *names]
        if self.postgres:
            self._run(_pg_update(table.name, key, tuple(names)), (cols.document(rows, every),))
        else:
            sets = ", ".join(f"{n} = ?" for n in names)
            sql = f"UPDATE {table.name} SET {sets} WHERE {key} = ?"
            self._run(sql, [(*cols.values(r, names), r[key]) for r in rows])

    def update_where(
        self, table: Table, values: Mapping[str, Any], where: str, params: Sequence[Any]
    ) -> None:
        """Set the same ``values`` on every row matching ``where``."""
        cols = self._columns(table)
        names = list(values)
        mark = "%s" if self.postgres else "?"
        sets = ", ".join(f"{n} = {mark}" for n in names)
        self._run(
            f"UPDATE {table.name} SET {sets} WHERE {where}",
            (*cols.values(values, names), *params),
        )

    def delete(self, table: Table, where: str, params: Sequence[Any]) -> None:
        self._run(f"DELETE FROM {table.name} WHERE {where}", tuple(params))

    def delete_keys(
        self, table: Table, names: Sequence[str], keys: Sequence[Sequence[Any]]
    ) -> None:
        """Delete the rows whose ``names`` columns equal one of ``keys`` (text columns)."""
        if not keys:
            return
        listed = ", ".join(names)
        if self.postgres:
            sql = (
                f"DELETE FROM {table.name} WHERE ({listed}) IN "
                f"(SELECT {listed} FROM json_populate_recordset(NULL::{table.name}, %s))"
            )
            rows = [dict(zip(names, k, strict=True)) for k in keys]
            self._run(sql, (self._columns(table).document(rows, names),))
        else:
            parts = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(names)))
            sql = f"DELETE FROM {table.name} WHERE ({listed}) IN (SELECT {parts} FROM json_each(?))"
            self._run(sql, (orjson.dumps([list(k) for k in keys]).decode(),))


@cache
def _pg_insert(table: str, names: tuple[str, ...]) -> str:
    listed = ", ".join(names)
    return (
        f"INSERT INTO {table} ({listed}) "
        f"SELECT {listed} FROM json_populate_recordset(NULL::{table}, %s)"
    )


@cache
def _pg_update(table: str, key: str, names: tuple[str, ...]) -> str:
    sets = ", ".join(f"{n} = v.{n}" for n in names)
    return (
        f"UPDATE {table} SET {sets} FROM json_populate_recordset(NULL::{table}, %s) AS v "
        f"WHERE {table}.{key} = v.{key}"
    )
