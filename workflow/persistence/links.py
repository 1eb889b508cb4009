"""The console's links (console.md C3): decision links and sign-in links, by the SHA-256 of
their token; the token itself is never stored."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from workflow.persistence.sql import Sql
from workflow.persistence.tables import access_links, members

DECISION, SIGN_IN = "decision", "sign_in"


class LinkRecords:
    def __init__(self, sql: Sql) -> None:
        self.sql = sql

    def insert(self, row: Mapping[str, Any]) -> None:
        self.sql.insert(access_links, [row])

    def find(self, token_hash: str) -> dict[str, Any] | None:
        rows = self.sql.select(access_links, f"token_hash = {self.sql.mark}", [token_hash])
        return rows[0] if rows else None

    def use(self, token_hash: str, at: datetime) -> bool:
        """Mark a link used; whether this call was the one that did (a single statement, so
        two racing uses cannot both win)."""
        mark = self.sql.mark
        return (
            self.sql.execute(
                f"UPDATE access_links SET used_at = {mark} "
                f"WHERE token_hash = {mark} AND used_at IS NULL",
                [self.sql.value(access_links, "used_at", at), token_hash],
            )
            == 1
        )

    def prune(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` links that expired before ``before``: visiting one then
        answers 404, as for a token that never existed."""
        mark = self.sql.mark
        return self.sql.execute(
            "DELETE FROM access_links WHERE token_hash IN (SELECT token_hash FROM access_links "
            f"WHERE expires_at < {mark} LIMIT {mark})",
            [self.sql.value(access_links, "expires_at", before), limit],
        )

    def members_by_email(self, email: str) -> list[dict[str, Any]]:
        """The current memberships of an address, whatever its case, in account order."""
        return self.sql.select(
            members,
            f"lower(email) = lower({self.sql.mark}) AND removed_at IS NULL",
            [email],
            suffix=" ORDER BY account_id, user_id",
        )
