"""The database half of ``subreq health``: reachable, and migrated to the head revision.

A container health check runs this every few seconds and kills what it calls unhealthy,
so every probe is bounded (connect and statement timeouts) and every failure becomes a
line saying what to fix instead of an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from workflow.errors import ConfigurationError
from workflow.persistence import migrate
from workflow.persistence.database import Database


@dataclass(frozen=True, slots=True)
class Check:
    """One dependency's verdict, printed as one line."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':<4} {self.name}: {self.detail}"


def bounded_url(url: str, timeout: float) -> str:
    """``url`` with PostgreSQL connect and statement timeouts, unless it sets its own.

    libpq counts ``connect_timeout`` in whole seconds and treats values under 2 as 2.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"SUBREQ_DATABASE_URL is not a database URL: {exc}") from None
    if parsed.get_backend_name() != "postgresql":
        return url
    query = dict(parsed.query)
    query.setdefault("connect_timeout", str(max(2, round(timeout))))
    query.setdefault("options", f"-c statement_timeout={int(timeout * 1000)}")
    return parsed.set(query=query).render_as_string(hide_password=False)


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
    return "; ".join(lines) or type(orig).__name__


def database_checks(url: str, *, timeout: float = 3.0) -> list[Check]:
    """``database`` (a query answers) and ``migrations`` (current revision is the head)."""
    try:
        db = Database(bounded_url(url, timeout), pool_size=1)
    except ConfigurationError as exc:
        return [Check("database", False, str(exc)), _skipped("migrations", "database")]
    where = make_url(url).render_as_string(hide_password=True)  # without the timeouts
    try:
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            return [
                Check("database", False, f"{where} unreachable: {_reason(exc)}"),
                _skipped("migrations", "database"),
            ]
        reachable = Check("database", True, f"{where} reachable")
        try:
            current, head = migrate.current_revision(db), migrate.head_revision(db)
        except SQLAlchemyError as exc:
            return [reachable, Check("migrations", False, f"cannot read: {_reason(exc)}")]
        if current != head:
            at = current or "none (empty database)"
            return [
                reachable,
                Check("migrations", False, f"at {at}, head is {head}: run `subreq db upgrade`"),
            ]
        return [reachable, Check("migrations", True, f"at head {head}")]
    finally:
        db.dispose()


def _skipped(name: str, because: str) -> Check:
    return Check(name, False, f"not checked: {because} unreachable")
