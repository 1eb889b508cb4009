"""Email delivery records (R18): one row per notification a notifier took on, claimed in
single statements so that two notifiers never both win (see
``workflow.notifications.deliveries`` for the protocol)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from workflow.persistence.sql import Sql
from workflow.persistence.tables import notification_deliveries as deliveries

SENDING, RETRYING, SENT, FAILED = "sending", "retrying", "sent", "failed"


class DeliveryRecords:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def insert_claim(self, record: Mapping[str, Any]) -> bool:
        """The first claim of a notification: whether no record existed yet."""
        return self.sql.insert_new(deliveries, record, "notification_id")

    def take_over(
        self,
        notification_id: str,
        token: str,
        now: datetime,
        stale_before: datetime,
        mine: str | None,
    ) -> bool:
        """Claim a record that waits for a retry, whose ``sending`` claim is older than
        ``stale_before`` (its notifier died), or that is still the caller's claim ``mine``."""
        sql, mark = self.sql, self.sql.mark
        at = sql.value(deliveries, "claimed_at", now)
        stale = f"claimed_at < {mark}"
        params: list[Any] = [SENDING, token, at, at, notification_id, RETRYING, SENDING]
        params.append(sql.value(deliveries, "claimed_at", stale_before))
        if mine is not None:
            stale += f" OR claim_token = {mark}"
            params.append(mine)
        return (
            sql.execute(
                f"UPDATE notification_deliveries SET status = {mark}, attempts = attempts + 1, "
                f"claim_token = {mark}, claimed_at = {mark}, updated_at = {mark} "
                f"WHERE notification_id = {mark} AND (status = {mark} "
                f"OR (status = {mark} AND ({stale})))",
                params,
            )
            == 1
        )

    def state(self, notification_id: str) -> dict[str, Any]:
        """Status, attempts and claim time of a record known to exist."""
        rows = self.sql.select(
            deliveries,
            f"notification_id = {self.sql.mark}",
            [notification_id],
            names=["status", "attempts", "claimed_at"],
        )
        return rows[0]

    def settle(self, notification_id: str, token: str, values: Mapping[str, Any]) -> bool:
        """Set ``values`` on the record while ``token`` still holds its ``sending`` claim;
        whether it did (a claim taken over as stale is no longer ours)."""
        sql, mark = self.sql, self.sql.mark
        names = list(values)
        sets = ", ".join(f"{n} = {mark}" for n in names)
        return (
            sql.execute(
                f"UPDATE notification_deliveries SET {sets} "
                f"WHERE notification_id = {mark} AND claim_token = {mark} AND status = {mark}",
                [*sql.columns(deliveries).values(values, names), notification_id, token, SENDING],
            )
            == 1
        )

    def recent(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        """The latest records, most recently changed first."""
        mark = self.sql.mark
        where, params = (f"status = {mark}", [status]) if status else ("1 = 1", [])
        return self.sql.select(
            deliveries,
            where,
            [*params, limit],
            suffix=f" ORDER BY updated_at DESC, notification_id DESC LIMIT {mark}",
        )

    def of_request(self, request_id: str) -> list[dict[str, Any]]:
        return self.sql.select(deliveries, f"request_id = {self.sql.mark}", [request_id])
