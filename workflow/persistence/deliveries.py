"""Email delivery records (R18): one row per notification, written by the command that asks
for it and then the notifier's work list. Claims are single statements that take many
due records at once (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer), and
outcomes are recorded only while the claim that sent them still holds (see
``workflow.notifications.deliveries`` for the protocol)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from workflow.persistence.locks import account_lock_keys
from workflow.persistence.sql import Sql
from workflow.persistence.tables import notification_deliveries as deliveries

PENDING, SENDING, RETRYING, SENT, FAILED = "pending", "sending", "retrying", "sent", "failed"

CLAIMED_COLUMNS = ("notification_id", "template", "recipient_email", "attempts", "due_at")
"""What a claim hands the notifier of the record; the email is built from its event
(``payload``, with the event's ``traceparent``), read in the same statement."""

EVENT_COLUMNS = (
    "coalesce((SELECT payload FROM outbox WHERE outbox.id = notification_deliveries.outbox_id), "
    "notification_deliveries.event) AS payload",
    "(SELECT traceparent FROM outbox WHERE outbox.id = notification_deliveries.outbox_id) "
    "AS traceparent",
)
"""The record's event (its outbox row, else the copy a migrated record keeps) and the trace
of the command that wrote it: one lookup by key each, in any statement on the records."""

SETTLED = ("status", "updated_at", "sent_at", "message_id", "last_error", "due_at")
"""What recording an outcome sets (``None`` where the outcome has none); the claim token and
its lease are cleared with them."""

SETTLED_SENT = SETTLED[:-1]
"""What recording a sent one sets: ``due_at`` stays until its ``notification.sent`` is
written (an indexed column: changing it at once would cost the index entries now)."""


UNRENEWED_LEASE = timedelta(minutes=5)
"""How long a claim without ``lease_until`` holds after ``claimed_at``: one made by a
notifier of a release before leases were renewed (the fixed claim timeout it used)."""


@dataclass(frozen=True)
class Claim:
    """What a notifier asks to claim: up to ``limit`` records due at ``now``, leased to
    ``token`` until ``lease_until``."""

    token: str
    now: datetime
    lease_until: datetime
    limit: int


@dataclass(frozen=True)
class Renewal:
    """Claims a living notifier still holds, ``(notification_id, claim_token)`` each: their
    leases are extended to ``lease_until`` where the claim is still theirs."""

    held: Sequence[tuple[str, str]]
    lease_until: datetime


class DeliveryRecords:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def settle_and_claim(
        self,
        settled: Sequence[Mapping[str, Any]],
        claim: Claim | None,
        renewal: Renewal | None = None,
    ) -> tuple[set[str], set[str], list[dict[str, Any]]]:
        """In one round trip on PostgreSQL, taking no lock but the records' own: record
        each settled row's values while its ``claim_token`` still holds the record's
        ``sending`` claim, extend the leases ``renewal`` names, and take what ``claim``
        asks for. A ``sent`` record keeps its ``due_at`` (an update in place): it is due
        for its ``notification.sent`` until :meth:`announce`. Returns the ids recorded (a
        claim taken over after its lease is not ours), the ids renewed, and the rows
        claimed, oldest first."""
        sql = self.sql
        sent = [row for row in settled if row["status"] == SENT]
        rest = [row for row in settled if row["status"] != SENT]
        settling = [
            *self._settling(sent, SETTLED_SENT),
            *self._settling(rest, SETTLED),
        ]
        renewing = self._renewal(renewal) if renewal is not None else []
        statements = [*settling, *renewing]
        if claim is not None:
            statements.append(self._claim(claim))
        results = sql.run_all(statements)
        ours = _ids(results[: len(settling)])
        renewed = _ids(results[len(settling) : len(settling) + len(renewing)])
        claimed: list[dict[str, Any]] = []
        if claim is not None:
            claimed = self._rows(CLAIMED_COLUMNS, results[-1] or [])
            claimed.sort(key=lambda r: r["due_at"])
        return ours, renewed, claimed

    def _settling(
        self, rows: Sequence[Mapping[str, Any]], names: Sequence[str]
    ) -> list[tuple[str, Any]]:
        return self.sql.guarded_updates(
            deliveries,
            ("notification_id", "claim_token"),
            names,
            rows,
            extra_set="claim_token = NULL, lease_until = NULL",
            extra_where=f"notification_deliveries.status = '{SENDING}'",
        )

    def announce(self, accounts: Sequence[str], notification_ids: Sequence[str]) -> set[str]:
        """Lock ``accounts`` (sorted, as commands lock them), then mark these ``sent``
        records done (no longer due) unless another transaction did: returns the ids it
        marked, whose ``notification.sent`` this transaction must write (once, however
        many notifiers try)."""
        sql = self.sql
        statements: list[tuple[str, Any]] = []
        lock = sql.lock_statement(account_lock_keys(accounts)) if accounts else None
        if lock is not None:
            statements.append(lock)
        where, param = sql.among("notification_id", notification_ids)
        statements.append(
            (
                f"UPDATE notification_deliveries SET due_at = NULL WHERE {where} "
                f"AND status = '{SENT}' AND due_at IS NOT NULL RETURNING notification_id",
                (param,),
            )
        )
        return _ids(sql.run_all(statements)[-1:])

    def unannounced(self, sent_before: datetime, limit: int) -> list[dict[str, Any]]:
        """``sent`` records whose ``notification.sent`` is not written yet, sent before
        ``sent_before`` (their notifier died in between), with their events."""
        mark = self.sql.mark
        return self._with_events(
            f"due_at IS NOT NULL AND status = '{SENT}' AND sent_at <= {mark}",
            [self.sql.value(deliveries, "sent_at", sent_before), limit],
            f" ORDER BY due_at LIMIT {mark}",
        )

    def _renewal(self, renewal: Renewal) -> list[tuple[str, Any]]:
        """The leases of ``renewal.held`` moved on, where each claim is still the one held
        (another notifier's claim has another token): by key, an update in place (HOT)."""
        rows = [
            {"notification_id": nid, "claim_token": token, "lease_until": renewal.lease_until}
            for nid, token in renewal.held
        ]
        return self.sql.guarded_updates(
            deliveries,
            ("notification_id", "claim_token"),
            ("lease_until",),
            rows,
            extra_where=f"notification_deliveries.status = '{SENDING}'",
        )

    def _rows(self, names: Sequence[str], records: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """Records read with ``names`` and then the :data:`EVENT_COLUMNS`, converted."""
        return self.sql.columns(deliveries).rows((*names, "payload", "traceparent"), records)

    def _with_events(self, where: str, params: Sequence[Any], suffix: str) -> list[dict[str, Any]]:
        """Every column of the records matching ``where``, and their events."""
        names = self.sql.columns(deliveries).names
        listed = ", ".join((*names, *EVENT_COLUMNS))
        records = self.sql.conn.exec_driver_sql(
            f"SELECT {listed} FROM notification_deliveries WHERE {where}{suffix}", tuple(params)
        ).fetchall()
        return self._rows(names, records)

    def _claim(self, claim: Claim) -> tuple[str, Any]:
        """Up to ``claim.limit`` due records (oldest first) under ``claim.token``, an attempt
        counted each, leased until ``claim.lease_until``, with their events. A ``sending``
        record is due once its lease ended (``lease_until``, or 5 minutes after a claim of
        an older release without one): its notifier died. Rows another transaction is
        claiming are skipped, never waited for, so notifiers sharing the database never
        take the same record. Only columns no index holds change, so PostgreSQL can
        update the rows in place (HOT)."""
        sql, mark = self.sql, self.sql.mark
        at = sql.value(deliveries, "due_at", claim.now)
        until = sql.value(deliveries, "lease_until", claim.lease_until)
        unrenewed = sql.value(deliveries, "claimed_at", claim.now - UNRENEWED_LEASE)
        skip = " FOR UPDATE SKIP LOCKED" if sql.name == "postgresql" else ""
        return (
            f"UPDATE notification_deliveries SET status = '{SENDING}', "
            f"attempts = attempts + 1, claim_token = {mark}, claimed_at = {mark}, "
            f"lease_until = {mark}, updated_at = {mark} "
            "WHERE notification_id IN (SELECT notification_id FROM notification_deliveries "
            f"WHERE due_at IS NOT NULL AND due_at <= {mark} AND (status IN ('{PENDING}', "
            f"'{RETRYING}') OR (status = '{SENDING}' AND (lease_until <= {mark} OR "
            f"(lease_until IS NULL AND claimed_at <= {mark})))) "
            f"ORDER BY due_at LIMIT {mark}{skip}) "
            f"RETURNING {', '.join((*CLAIMED_COLUMNS, *EVENT_COLUMNS))}",
            (claim.token, at, until, at, at, at, unrenewed, claim.limit),
        )

    def failed_unreported(self, limit: int) -> list[dict[str, Any]]:
        """Records given up whose dead-letter copy the broker has not confirmed yet."""
        return self._with_events(
            f"due_at IS NOT NULL AND status = '{FAILED}'",
            [limit],
            f" ORDER BY due_at LIMIT {self.sql.mark}",
        )

    def reported(self, notification_ids: Sequence[str]) -> None:
        """Their dead-letter copies are confirmed: nothing is left to do for them."""
        where, param = self.sql.among("notification_id", notification_ids)
        self.sql.update_where(
            deliveries, {"due_at": None}, f"status = '{FAILED}' AND {where}", [param]
        )

    def recent(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        """The latest records, most recently changed first (a scan of the records: no
        index on ``updated_at`` is kept for this operators' list, see tables.py)."""
        mark = self.sql.mark
        where, params = (f"status = {mark}", [status]) if status else ("1 = 1", [])
        return self._with_events(
            where,
            [*params, limit],
            f" ORDER BY updated_at DESC, notification_id DESC LIMIT {mark}",
        )

    def of_notifications(self, notification_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The records of these notifications (by key), with their events."""
        if not notification_ids:
            return []
        where, param = self.sql.among("notification_id", notification_ids)
        return self._with_events(where, [param], "")

    def oldest_due_event(self) -> int | None:
        """The smallest outbox id of a record still due: retention keeps it and all after."""
        found = self.sql.scalar_rows(
            "SELECT min(outbox_id) FROM notification_deliveries WHERE due_at IS NOT NULL", []
        )
        return None if found[0] is None else int(found[0])


def _ids(results: Sequence[Sequence[Any] | None]) -> set[str]:
    """The keys the ``RETURNING`` of some statements gave back."""
    return {row[0] for rows in results for row in rows or []}
