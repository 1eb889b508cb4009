"""PostgreSQL's statements: rows travel as one JSON document, keys as one array literal,
and several statements go out in one psycopg pipeline.

``json_populate_recordset`` converts each field of the document to its column's type on
the server; an array literal is one text parameter, far cheaper to send than a list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
import psycopg
from sqlalchemy import JSON, Table
from sqlalchemy.exc import DBAPIError

from workflow.persistence.sql import Convert, Sql, inserted_columns
from workflow.persistence.tables import UTCDateTime


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC)


def _json_load(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def text_array(values: Sequence[str]) -> str:
    """A PostgreSQL array literal of ``values``."""
    quoted = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in quoted) + "}"


class PostgresSql(Sql):
    name = "postgresql"
    mark = "%s"

    def _convert(self, table: Table) -> tuple[dict[str, Convert], dict[str, Convert]]:
        bind: dict[str, Convert] = {}
        result: dict[str, Convert] = {}
        for column in table.columns:
            if isinstance(column.type, UTCDateTime):
                bind[column.name] = _naive_utc
                result[column.name] = _aware
            elif isinstance(column.type, JSON):  # nested as JSON in the rows' document
                result[column.name] = _json_load
        return bind, result

    def _document(
        self, table: Table, rows: Sequence[Mapping[str, Any]], names: Sequence[str]
    ) -> str:
        bind = self.columns(table).bind
        return orjson.dumps(
            [{n: bind[n](r.get(n)) if n in bind else r.get(n) for n in names} for r in rows]
        ).decode()

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        if all(isinstance(v, int) for v in values):
            return f"{column} = ANY(%s::bigint[])", "{" + ",".join(map(str, values)) + "}"
        return f"{column} = ANY(%s::text[])", text_array(values)

    def insert(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        names = inserted_columns(table, rows[0])
        self._run(_insert_text(table.name, names), (self._document(table, rows, names),))

    def insert_with_children(
        self,
        table: Table,
        rows: Sequence[Mapping[str, Any]],
        child: Table,
        children: Sequence[Mapping[str, Any]],
        *,
        link: str,
        ref: str,
    ) -> None:
        """One statement: the rows' insert returns their ids, which the children's takes."""
        if not children:
            self.insert(table, rows)
            return
        names = inserted_columns(table, rows[0])
        child_names = tuple(n for n in inserted_columns(child, children[0]) if n != ref)
        self._run(
            _insert_children_text(table.name, names, child.name, child_names, link, ref),
            (
                self._document(table, rows, names),
                self._document(child, children, [*child_names, link]),
            ),
        )

    def update(
        self, table: Table, key: str, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        if not rows:
            return
        document = self._document(table, rows, [key, *names])
        self._run(_update_text(table.name, key, tuple(names)), (document,))

    def delete_keys(
        self, table: Table, names: Sequence[str], keys: Sequence[Sequence[Any]]
    ) -> None:
        if not keys:
            return
        listed = ", ".join(names)
        rows = [dict(zip(names, k, strict=True)) for k in keys]
        self._run(
            f"DELETE FROM {table.name} WHERE ({listed}) IN "
            f"(SELECT {listed} FROM json_populate_recordset(NULL::{table.name}, %s))",
            (self._document(table, rows, names),),
        )

    def guarded_updates(
        self,
        table: Table,
        keys: tuple[str, str],
        names: Sequence[str],
        rows: Sequence[Mapping[str, Any]],
        *,
        extra_set: str = "",
        extra_where: str = "",
    ) -> list[tuple[str, Any]]:
        if not rows:
            return []
        name, (first, second) = table.name, keys
        sets = ", ".join([*(f"{n} = v.{n}" for n in names), *filter(None, [extra_set])])
        where = f"{name}.{first} = v.{first} AND {name}.{second} = v.{second}"
        if extra_where:
            where += f" AND {extra_where}"
        document = self._document(table, rows, [first, second, *names])
        return [
            (
                f"UPDATE {name} SET {sets} FROM json_populate_recordset(NULL::{name}, %s) AS v "
                f"WHERE {where} RETURNING {name}.{first}",
                (document,),
            )
        ]

    def try_exclusive(self, key: int) -> bool:
        found = self.scalar_rows("SELECT pg_try_advisory_xact_lock(%s)", [key])
        return bool(found[0])

    def lock_statement(self, keys: Sequence[int]) -> tuple[str, Any] | None:
        # unnest keeps the array's order, and the aggregate takes the locks row by row.
        return (
            "SELECT count(pg_advisory_xact_lock(k)) FROM unnest(%s::bigint[]) AS k",
            ("{" + ",".join(map(str, keys)) + "}",),
        )

    def hold_exclusive(self, key: int) -> None:
        self._run("SELECT pg_advisory_xact_lock(%s)", (key,))

    def lazy_commit(self) -> None:
        self.conn.exec_driver_sql("SET LOCAL synchronous_commit = off")

    def _run_all(self, statements: Sequence[tuple[str, Any]]) -> list[Sequence[Any] | None]:
        """Send every statement, then read every answer (psycopg pipeline mode). Errors
        come out as SQLAlchemy's, as if the statement had gone through it."""
        if len(statements) < 2:
            return super()._run_all(statements)
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
                dialect=self.conn.dialect,
            ) from exc
        finally:
            for cursor in cursors:
                cursor.close()


@cache
def _insert_text(table: str, names: tuple[str, ...]) -> str:
    listed = ", ".join(names)
    return (
        f"INSERT INTO {table} ({listed}) "
        f"SELECT {listed} FROM json_populate_recordset(NULL::{table}, %s)"
    )


@cache
def _insert_children_text(
    table: str,
    names: tuple[str, ...],
    child: str,
    child_names: tuple[str, ...],
    link: str,
    ref: str,
) -> str:
    picked = ", ".join(f"c.{n}" for n in child_names)
    return (
        f"WITH parent AS ({_insert_text(table, names)} RETURNING id, {link}) "
        f"INSERT INTO {child} ({', '.join(child_names)}, {ref}) SELECT {picked}, parent.id "
        f"FROM json_array_elements(%s::json) AS d "
        f"CROSS JOIN LATERAL json_populate_record(NULL::{child}, d) AS c "
        f"JOIN parent ON parent.{link} = d->>'{link}'"
    )


@cache
def _update_text(table: str, key: str, names: tuple[str, ...]) -> str:
    sets = ", ".join(f"{n} = v.{n}" for n in names)
    return (
        f"UPDATE {table} SET {sets} FROM json_populate_recordset(NULL::{table}, %s) AS v "
        f"WHERE {table}.{key} = v.{key}"
    )
