"""Fixed-text statements for the batch path, built once per table from the SQLAlchemy tables.

A compiled SQLAlchemy statement costs tens of microseconds per row on the way in and out,
and a multi-row INSERT has a new text for every row count, which the driver parses again,
placeholder by placeholder. Here a statement's text never changes with the batch: on
PostgreSQL a batch travels as one array per column (``unnest``, ``= ANY``), on SQLite as an
``executemany`` or a JSON array read with ``json_each``. Values are converted the way the
tables' column types convert them (naive UTC times, JSON as text), so rows written here and
rows written through SQLAlchemy are the same. Statements run through
``Connection.exec_driver_sql``: same transaction, same error translation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
from sqlalchemy import JSON, Boolean, Connection, Table
from sqlalchemy.engine import Dialect

from workflow.tables import UTCDateTime

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
        self.names = tuple(c.name for c in table.columns)
        self.sql_types = {c.name: c.type.compile(dialect) for c in table.columns}
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
                self.bind[column.name] = _json_text
                self.result[column.name] = _json_load
            elif isinstance(kind, Boolean) and not self.postgres:
                self.result[column.name] = _boolean

    def values(self, row: Mapping[str, Any], names: Sequence[str]) -> list[Any]:
        bind = self.bind
        return [bind[n](row.get(n)) if n in bind else row.get(n) for n in names]

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


class RawSql:
    """The batch path's statements on one connection's dialect."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self.postgres = self.dialect.name == "postgresql"

    def _columns(self, table: Table) -> Columns:
        return columns(table, self.dialect)

    # --- reading ---------------------------------------------------------------------------

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        """A condition "``column`` is one of ``values``" whose text does not depend on how
        many values there are, and its parameter."""
        if self.postgres:
            return f"{column} = ANY(%b)", list(values)
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
        cols = self._columns(table)
        names = tuple(names or cols.names)
        sql = f"SELECT {', '.join(names)} FROM {table.name} WHERE {where}{suffix}"
        records = self.conn.exec_driver_sql(sql, tuple(params)).fetchall()
        return cols.rows(names, records)

    # --- writing ---------------------------------------------------------------------------

    def insert(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Every row in one statement (PostgreSQL) or one executemany (SQLite); autoincrement
        primary keys are left to the database."""
        if not rows:
            return
        cols = self._columns(table)
        names = [
            c.name
            for c in table.columns
            if not (c.primary_key and c.autoincrement is True and c.name not in rows[0])
        ]
        if self.postgres:
            arrays = list(zip(*(cols.values(r, names) for r in rows), strict=True))
            sql = _pg_insert(table.name, tuple(names), tuple(cols.sql_types[n] for n in names))
            self.conn.exec_driver_sql(sql, tuple(list(a) for a in arrays))
        else:
            marks = ", ".join("?" for _ in names)
            sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
            self.conn.exec_driver_sql(sql, [tuple(cols.values(r, names)) for r in rows])

    def update(
        self, table: Table, key: str, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Set ``names`` from each row on the row of ``table`` whose ``key`` matches."""
        if not rows:
            return
        cols = self._columns(table)
        every = [key, *names]
        if self.postgres:
            arrays = list(zip(*(cols.values(r, every) for r in rows), strict=True))
            sql = _pg_update(table.name, key, tuple(names), tuple(cols.sql_types[n] for n in every))
            self.conn.exec_driver_sql(sql, tuple(list(a) for a in arrays))
        else:
            sets = ", ".join(f"{n} = ?" for n in names)
            sql = f"UPDATE {table.name} SET {sets} WHERE {key} = ?"
            self.conn.exec_driver_sql(sql, [(*cols.values(r, names), r[key]) for r in rows])

    def update_where(
        self, table: Table, values: Mapping[str, Any], where: str, params: Sequence[Any]
    ) -> None:
        """Set the same ``values`` on every row matching ``where``."""
        cols = self._columns(table)
        names = list(values)
        mark = "%s" if self.postgres else "?"
        sets = ", ".join(f"{n} = {mark}" for n in names)
        self.conn.exec_driver_sql(
            f"UPDATE {table.name} SET {sets} WHERE {where}",
            (*cols.values(values, names), *params),
        )

    def delete(self, table: Table, where: str, params: Sequence[Any]) -> None:
        self.conn.exec_driver_sql(f"DELETE FROM {table.name} WHERE {where}", tuple(params))

    def delete_keys(
        self, table: Table, names: Sequence[str], keys: Sequence[Sequence[Any]]
    ) -> None:
        """Delete the rows whose ``names`` columns equal one of ``keys`` (text columns)."""
        if not keys:
            return
        listed = ", ".join(names)
        if self.postgres:
            arrays = ", ".join("%b::text[]" for _ in names)
            sql = f"DELETE FROM {table.name} WHERE ({listed}) IN (SELECT * FROM unnest({arrays}))"
            self.conn.exec_driver_sql(sql, tuple(list(c) for c in zip(*keys, strict=True)))
        else:
            parts = ", ".join(f"value ->> {i}" for i in range(len(names)))
            sql = f"DELETE FROM {table.name} WHERE ({listed}) IN (SELECT {parts} FROM json_each(?))"
            self.conn.exec_driver_sql(sql, (orjson.dumps([list(k) for k in keys]).decode(),))


@cache
def _pg_insert(table: str, names: tuple[str, ...], types: tuple[str, ...]) -> str:
    arrays = ", ".join(f"%b::{kind}[]" for kind in types)
    return f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM unnest({arrays})"


@cache
def _pg_update(table: str, key: str, names: tuple[str, ...], types: tuple[str, ...]) -> str:
    arrays = ", ".join(f"%b::{kind}[]" for kind in types)
    sets = ", ".join(f"{n} = v.{n}" for n in names)
    return (
        f"UPDATE {table} SET {sets} FROM unnest({arrays}) AS v({key}, {', '.join(names)}) "
        f"WHERE {table}.{key} = v.{key}"
    )
