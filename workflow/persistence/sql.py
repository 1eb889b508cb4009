"""Fixed-text statements, built once per table from the SQLAlchemy tables; one subclass
per database (``postgres.py``, ``sqlite.py``), chosen once from the URL.

A compiled SQLAlchemy statement costs tens of microseconds per row on the way in and out,
and a multi-row INSERT has a new text for every row count, which the driver parses again,
placeholder by placeholder. Here a statement's text never changes with the number of rows
or keys. Values are converted the way the tables' column types convert them (naive UTC
times, JSON), so rows written here and rows written through SQLAlchemy are the same.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import Connection, Table

Convert = Callable[[Any], Any]


class Columns:
    """One table's columns on one database: how each value goes in and comes out."""

    def __init__(self, table: Table, bind: dict[str, Convert], result: dict[str, Convert]) -> None:
        self.table = table
        self.names = tuple(str(c.name) for c in table.columns)
        self.bind = bind
        self.result = result

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


def inserted_columns(table: Table, first: Mapping[str, Any]) -> tuple[str, ...]:
    """The columns an INSERT names: all but an autoincrement key the rows leave out."""
    return tuple(
        str(c.name)
        for c in table.columns
        if not (c.primary_key and c.autoincrement is True and c.name not in first)
    )


@dataclass(frozen=True, slots=True)
class Query:
    """A SELECT of some of ``table``'s columns, to run alone or with others."""

    table: Table
    where: str
    params: Sequence[Any]
    names: Sequence[str] | None = None
    suffix: str = ""


class Sql(ABC):
    """The statements of one transaction's connection. Writes made inside :meth:`deferred`
    go out together at its end (on PostgreSQL in one round trip)."""

    name: ClassVar[str]
    mark: ClassVar[str]
    """The driver's parameter placeholder."""

    _columns_cache: ClassVar[dict[str, Columns]]

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._deferred: list[tuple[str, Any]] | None = None

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._columns_cache = {}

    # --- what differs between databases -------------------------------------------------

    @abstractmethod
    def _convert(self, table: Table) -> tuple[dict[str, Convert], dict[str, Convert]]:
        """The bind and result converters of ``table``'s columns that need one."""

    @abstractmethod
    def among(self, column: str, values: Sequence[Any]) -> tuple[str, Any]:
        """A condition "``column`` is one of ``values``" whose text does not depend on how
        many values there are, and its parameter."""

    @abstractmethod
    def insert(self, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
        """Every row in one statement; autoincrement primary keys left to the database."""

    @abstractmethod
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
        """:meth:`insert` ``rows`` into ``table`` (its key ``id`` left to the database), and
        ``children`` into ``child`` with ``child.<ref>`` the ``id`` of the row whose ``link``
        column equals the child's ``link`` value (a key of the child's row, no column)."""

    @abstractmethod
    def update(
        self, table: Table, key: str, names: Sequence[str], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Set ``names`` from each row on the row of ``table`` whose ``key`` matches."""

    @abstractmethod
    def delete_keys(
        self, table: Table, names: Sequence[str], keys: Sequence[Sequence[Any]]
    ) -> None:
        """Delete the rows whose ``names`` columns equal one of ``keys`` (text columns)."""

    @abstractmethod
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
        """Statements (for :meth:`run_all`) that set ``names`` from each row on the row of
        ``table`` whose two ``keys`` columns equal the row's (and that meets ``extra_where``),
        each returning the first key of the rows it changed."""

    @abstractmethod
    def try_exclusive(self, key: int) -> bool:
        """Whether this transaction is now the only one holding the lock named ``key``."""

    def lock_statement(self, keys: Sequence[int]) -> tuple[str, Any] | None:
        """A statement waiting until this transaction holds every lock of ``keys`` (until it
        ends), taken in the order given; ``None`` where ``BEGIN IMMEDIATE`` already made
        the transaction the only writer (SQLite)."""
        return None

    def lock_keys(self, keys: Sequence[int]) -> None:
        """Take the locks of ``keys`` now (see :meth:`lock_statement`)."""
        statement = self.lock_statement(keys)
        if statement is not None:
            self._run_all([statement])

    @abstractmethod
    def hold_exclusive(self, key: int) -> None:
        """Wait until this transaction alone holds the lock named ``key``, until it ends;
        deferred like a write."""

    @abstractmethod
    def lazy_commit(self) -> None:
        """Let this transaction's commit return before it is on disk."""

    def _run_all(self, statements: Sequence[tuple[str, Any]]) -> list[Sequence[Any] | None]:
        """Several statements in order; the results of those that return rows."""
        results: list[Sequence[Any] | None] = []
        for sql, params in statements:
            result = self.conn.exec_driver_sql(sql, params)
            results.append(result.fetchall() if result.returns_rows else None)
        return results

    # --- shared ---------------------------------------------------------------------------

    def columns(self, table: Table) -> Columns:
        found = self._columns_cache.get(table.name)
        if found is None or found.table is not table:
            bind, result = self._convert(table)
            found = self._columns_cache[table.name] = Columns(table, bind, result)
        return found

    def _run(self, sql: str, params: Any) -> None:
        if self._deferred is not None:
            self._deferred.append((sql, params))
        else:
            self.conn.exec_driver_sql(sql, params)

    def execute(self, sql: str, params: Sequence[Any]) -> int:
        """One statement now, outside any deferred group; how many rows it touched."""
        return int(self.conn.exec_driver_sql(sql, tuple(params)).rowcount or 0)

    def run_all(self, statements: Sequence[tuple[str, Any]]) -> list[Sequence[Any] | None]:
        """Several statements now, in order (one round trip on PostgreSQL); the rows of each
        that returns rows, unconverted."""
        return self._run_all(statements)

    def scalar_rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """The first column of every row of a query, unconverted."""
        return [r[0] for r in self.conn.exec_driver_sql(sql, tuple(params)).fetchall()]

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """The writes inside go out together at the end, in order."""
        self._deferred = []
        try:
            yield
            statements = self._deferred
        finally:
            self._deferred = None
        if statements:
            self._run_all(statements)

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

    def select_all(
        self, queries: Sequence[Query], *, locks: Sequence[int] = ()
    ) -> list[list[dict[str, Any]]]:
        """Several independent queries; on PostgreSQL in one round trip, after the locks of
        ``locks`` (see :meth:`lock_statement`) when given, so they read what the previous
        holders committed."""
        statements = []
        shapes = []
        lock = self.lock_statement(locks) if locks else None
        if lock is not None:
            statements.append(lock)
        for q in queries:
            cols = self.columns(q.table)
            names = tuple(q.names or cols.names)
            statements.append(
                (
                    f"SELECT {', '.join(names)} FROM {q.table.name} WHERE {q.where}{q.suffix}",
                    tuple(q.params),
                )
            )
            shapes.append((cols, names))
        results = self._run_all(statements)[1 if lock is not None else 0 :]
        return [
            cols.rows(names, records or [])
            for (cols, names), records in zip(shapes, results, strict=True)
        ]

    def value(self, table: Table, column: str, value: Any) -> Any:
        """``value`` as the driver takes it for ``table.column``."""
        convert = self.columns(table).bind.get(column)
        return value if convert is None or value is None else convert(value)

    def loaded(self, table: Table, column: str, value: Any) -> Any:
        """A value read from ``table.column`` (or an aggregate of it) as the code uses it."""
        convert = self.columns(table).result.get(column)
        return value if convert is None or value is None else convert(value)

    def update_where(
        self, table: Table, values: Mapping[str, Any], where: str, params: Sequence[Any]
    ) -> None:
        """Set the same ``values`` on every row matching ``where``."""
        names = list(values)
        sets = ", ".join(f"{n} = {self.mark}" for n in names)
        self._run(
            f"UPDATE {table.name} SET {sets} WHERE {where}",
            (*self.columns(table).values(values, names), *params),
        )

    def delete(self, table: Table, where: str, params: Sequence[Any]) -> None:
        self._run(f"DELETE FROM {table.name} WHERE {where}", tuple(params))

    def insert_new(self, table: Table, row: Mapping[str, Any], key: str) -> bool:
        """Insert ``row`` unless a row with its ``key`` exists; whether it was inserted."""
        names = list(row)
        marks = ", ".join(self.mark for _ in names)
        found = self.conn.exec_driver_sql(
            f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({marks}) "
            f"ON CONFLICT ({key}) DO NOTHING RETURNING {key}",
            tuple(self.columns(table).values(row, names)),
        ).fetchall()
        return bool(found)
