"""SQLAlchemy tables: the service's whole state, history, audit, idempotency and outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC and hands back aware UTC, identically on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


# BigInteger autoincrement that SQLite still treats as its rowid alias.
BigId = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

accounts = Table(
    "accounts",
    metadata,
    Column("account_id", String(128), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("type", String(20), nullable=False),
    Column("allows_subscription_changes", Boolean, nullable=False),
    Column("currency", String(3)),
    Column("billing_cycle", String(10)),
    # R23: above this total per billing period (a decimal string, exact on every database)
    # a request needs two deciders; NULL: one is enough. Its currency is the account's.
    Column("approval_second_above", String(32)),
    Column("approval_currency", String(3)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

members = Table(
    "members",
    metadata,
    Column("account_id", ForeignKey("accounts.account_id"), primary_key=True),
    Column("user_id", String(128), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("email", String(254), nullable=False),
    Column("role", String(20), nullable=False),
    Column("locale", String(16), nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # member.remove keeps the row: a removed member is refused as such (R3), and their
    # name still shows on the requests they made.
    Column("removed_at", UTCDateTime),
)

subscription_products = Table(
    "subscription_products",
    metadata,
    Column("account_id", ForeignKey("accounts.account_id"), primary_key=True),
    Column("product", String(64), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("plan", String(64), nullable=False),
    Column("seats", Integer, nullable=False),
)

requests = Table(
    "requests",
    metadata,
    Column("request_id", String(36), primary_key=True),
    Column("account_id", ForeignKey("accounts.account_id"), nullable=False),
    Column("requester_id", String(128), nullable=False),
    Column("state", String(12), nullable=False),
    Column("changes", JSON, nullable=False),
    Column("note", Text),
    Column("summary", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("decided_at", UTCDateTime),
    Column("decided_by", String(128)),
    Column("comment", Text),
    # The deciders emailed about the request (on submit, R16, or by escalation, R22): the
    # reminders and the expiry warning go to them, and a withdrawal is told to them (R17).
    Column("notified", JSON, nullable=False),
    # The sweeper's timers (R14, R20-R22), each recorded in the transaction that fires it:
    # when the latest reminder went out and how many were sent, the expiry warning, the
    # escalation.
    Column("reminded_at", UTCDateTime),
    Column("reminders", Integer, nullable=False, server_default=text("0")),
    Column("warned_at", UTCDateTime),
    Column("escalated_at", UTCDateTime),
    Index("ix_requests_account_created", "account_id", "created_at"),
    # The sweeper's and the metrics' scans: pending requests by age. A decided request
    # leaves the index (queries name the state as a literal, so SQLite uses it too).
    Index(
        "ix_requests_pending_created",
        "created_at",
        postgresql_where=text("state = 'pending'"),
        sqlite_where=text("state = 'pending'"),
    ),
    # R11 under concurrency: at most one pending request per account.
    Index(
        "uq_requests_one_pending",
        "account_id",
        unique=True,
        postgresql_where=text("state = 'pending'"),
        sqlite_where=text("state = 'pending'"),
    ),
)

request_transitions = Table(
    "request_transitions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("request_id", ForeignKey("requests.request_id"), nullable=False, index=True),
    Column("from_state", String(12)),
    Column("to_state", String(12), nullable=False),
    Column("trigger", String(12), nullable=False),
    Column("actor_id", String(128)),
    Column("at", UTCDateTime, nullable=False),
    Column("reason", Text),
    # The trace of the command that made the transition (operators: `requests show`).
    Column("traceparent", String(55)),
    # amqp, web or email_link; none for a transition the sweeper made (expiry).
    Column("channel", String(12)),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("command", String(64), nullable=False),
    Column("idempotency_key", String(200)),
    Column("actor_id", String(128)),
    Column("account_id", String(128), index=True),
    Column("request_id", String(128)),
    Column("code", String(32), nullable=False),
    Column("message", Text, nullable=False),
    Column("details", JSON, nullable=False),
    Column("channel", String(12)),
)

processed_commands = Table(
    "processed_commands",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("command", String(64), nullable=False),
    Column("reply", Text, nullable=False),
    Column("processed_at", UTCDateTime, nullable=False, index=True),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False),
    Column("type", String(64), nullable=False),
    Column("account_id", String(128), nullable=False),
    Column("request_id", String(36)),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # The trace of the command that wrote the event: the relay's publish continues it.
    Column("traceparent", String(55)),
    # Written once and never updated: what is published is said by ``outbox_published``
    # (an UPDATE per event rewrote its whole payload). Only the key is indexed: the relay
    # reads in key order past its mark, and nothing else asks for events by a column fast.
)

# The relay's marks: one row per published batch, "every event up to ``upto_id`` was
# confirmed by the broker at ``at``". The highest mark is where the relay goes on.
outbox_published = Table(
    "outbox_published",
    metadata,
    Column("upto_id", BigInteger, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
)

# One row per notification the email notifier took on (R18): the claim that keeps two
# notifiers, or a redelivered event, from sending it twice, and what became of it. The
# email itself is the ``notification.requested`` event the record refers to (``outbox_id``):
# the claim reads it from the outbox, and retention keeps it while the record is due. Only
# what the operators' list cannot do without once the event is pruned is copied (template,
# recipient's address). Narrow on purpose: the notifier rewrites each record twice.
FILLFACTOR = 40
"""Percent of each page the records' inserts fill: the rest takes the claims' new row
versions, so claims stay HOT (measured: 40 all of them, 50 four in five)."""

notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    Column("notification_id", String(36), primary_key=True),
    # The outbox row of its ``notification.requested`` event; NULL on records migrated
    # (0008) after their event was pruned, which keep the event in ``event`` instead.
    Column("outbox_id", BigInteger),
    Column("template", String(64), nullable=False),
    Column("recipient_email", String(254), nullable=False),
    # pending, sending (claimed, maybe at the SMTP server now), retrying, sent, failed
    Column("status", String(10), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("claim_token", String(36)),
    Column("claimed_at", UTCDateTime),
    Column("last_error", Text),
    Column("message_id", String(300)),
    # Not indexed: only the operators' list orders by it, and a scan serves that well
    # enough (2,000,000 records: 320 ms; 0.4 ms with the index, which cost an entry for
    # every insert and every settle).
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    # When the notifier may take the record: a new or retrying one once it is due; a claim
    # leaves it as it is (the claim's lease, from ``claimed_at``, says when a ``sending``
    # record may be taken over), so claiming changes no indexed column (a HOT update). NULL
    # once nothing is left to do.
    Column("due_at", UTCDateTime),
    # The event's JSON, only on records whose outbox row was gone when 0008 ran.
    Column("event", Text),
    Index(
        "ix_notification_deliveries_due",
        "due_at",
        postgresql_where=text("due_at IS NOT NULL"),
        sqlite_where=text("due_at IS NOT NULL"),
    ),
    # Room on each page for the claim's new version of its rows (see ``due_at``).
    postgresql_with={"fillfactor": FILLFACTOR},
)

# Console links (console.md C3): a decision link for one decider and one request, or a
# single-use sign-in link for one member. Only the SHA-256 of the token is kept.
access_links = Table(
    "access_links",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kind", String(10), nullable=False),
    Column("account_id", String(128), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("request_id", String(36), index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False, index=True),
    Column("used_at", UTCDateTime),
)

__all__ = [
    "access_links",
    "accounts",
    "audit_log",
    "members",
    "metadata",
    "notification_deliveries",
    "outbox",
    "outbox_published",
    "processed_commands",
    "request_transitions",
    "requests",
    "subscription_products",
]
