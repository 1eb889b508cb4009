"""SQLite's statements: a write is one ``executemany``, the keys of a read one JSON array
read with ``json_each``. Times are stored as text in SQLAlchemy's format, so the column
types themselves convert them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import JSON, Boolean, Table

from workflow.persistence.sql import Convert, Sql, inserted_columns
from workflow.persistence.tables import UTCDateTime


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _json_load(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _boolean(value: Any) -> bool:
    return bool(value)


class SqliteSql(Sql):
    name = "sqlite"
    mark = "?"

    def _convert(self, table: Table) -> tuple[dict[str, Convert], dict[str, Convert]]:
        dialect = self.conn.dialect
        bind: dict[str, Convert] = {}
        result: dict[str, Convert] = {}
        for column in table.columns:
            kind = column.type
            if isinstance(kind, UTCDateTime):
                impl = kind.dialect_impl(dialect)
                to_db = impl.bind_processor(dialect)
                from_db = impl.result_processor(dialect, None)
                assert to_db is not None
                assert from_db is not None
                bind[column.name] = to_db
                result[column.name] = from_db
            elif isinstance(kind, JSON):
                bind[column.name] = _json_text
                result[column.name] = _json_load
            elif isinstance(kind, Boolean):
                result[column.name] = _boolean
        return bind, result

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        return f"{column} IN (SELECT value FROM json_each(?))", orjson.dumps(list(values)).decode()

    def insert(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        names = inserted_columns(table, rows[0])
        cols = self.columns(table)
        marks = ", ".join("?" for _ in names)
        sql = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks})"
        self._run(sql, [tuple(cols.values(r, names)) for r in rows])

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
        """The rows, then the children, each finding its row among the newest ``len(rows)``
        by rowid: SQLite has one writer at a time, so no other transaction inserted rows
        between the two statements, and those are the rows."""
        self.insert(table, rows)
        if not children:
            return
        names = tuple(n for n in inserted_columns(child, children[0]) if n != ref)
        cols = self.columns(child)
        marks = ", ".join("?" for _ in names)
        newest = f"SELECT id, {link} FROM {table.name} ORDER BY id DESC LIMIT ?"
        sql = (
            f"INSERT INTO {child.name} ({', '.join(names)}, {ref}) "
            f"VALUES ({marks}, (SELECT id FROM ({newest}) WHERE {link} = ?))"
        )
        self._run(sql, [(*cols.values(c, names), len(rows), c[link]) for c in children])

    def update(
        self, table: Table, key: str, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        if not rows:
            return
        cols = self.columns(table)
        sets = ", ".join(f"{n} = ?" for n in names)
        sql = f"UPDATE {table.name} SET {sets} WHERE {key} = ?"
        self._run(sql, [(*cols.values(r, names), r[key]) for r in rows])

    def delete_keys(
        self, table: Table, names: Sequence[str], keys: Sequence[Sequence[Any]]
    ) -> None:
        if not keys:
            return
        listed = ", ".join(names)
        parts = ", ".join(f"json_extract(value, '$[{i}]')" for i in range(len(names)))
        sql = f"DELETE FROM {table.name} WHERE ({listed}) IN (SELECT {parts} FROM json_each(?))"
        self._run(sql, (orjson.dumps([list(k) for k in keys]).decode(),))

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
        """One statement per row: SQLite has no RETURNING for ``executemany``; it is local."""
        cols = self.columns(table)
        first, second = keys
        sets = ", ".join([*(f"{n} = ?" for n in names), *filter(None, [extra_set])])
        where = f"{first} = ? AND {second} = ?" + (f" AND {extra_where}" if extra_where else "")
        text = f"UPDATE {table.name} SET {sets} WHERE {where} RETURNING {first}"
        return [(text, (*cols.values(r, names), r[first], r[second])) for r in rows]

    def try_exclusive(self, key: int) -> bool:
        return True  # BEGIN IMMEDIATE: no other writer holds the database now

    def hold_exclusive(self, key: int) -> None:
        """Nothing to wait for: ``BEGIN IMMEDIATE`` already made this the only writer."""

    def lazy_commit(self) -> None:
        """Nothing to do: ``synchronous=NORMAL`` in WAL mode never waits for the disk."""
