"""What the console's pages show, read from the database without locking anything: the
member behind a session or link, the account and its subscription, its requests (as the
contract's request view), who was told what, and the link behind a token."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workflow.app.views import request_view, request_views
from workflow.console.tokens import token_hash, well_formed
from workflow.ops.reports import request_notifications
from workflow.persistence.database import Database


@dataclass(frozen=True)
class Member:
    account_id: str
    user_id: str
    name: str
    email: str
    role: str
    locale: str


@dataclass(frozen=True)
class AccessLink:
    kind: str
    account_id: str
    user_id: str
    request_id: str | None
    expires_at: datetime
    used_at: datetime | None
    token_hash: str

    def usable(self, now: datetime) -> bool:
        return self.used_at is None and now < self.expires_at


class Reads:
    """The console's read models; every method is one short transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def member(self, account_id: str, user_id: str) -> Member | None:
        """A current member (a removed one no longer signs in, R3)."""
        with self.db.store(lock=False) as store:
            row = store.member(account_id, user_id)
        return None if row is None else _member(row)

    def account(self, account_id: str) -> dict[str, Any] | None:
        """The account with its subscription's products, and its pending request's id."""
        with self.db.store(lock=False) as store:
            row = store.account(account_id)
            if row is None:
                return None
            subscription = store.subscription(row)
            return {
                **row,
                "products": [
                    {"product": p.product, "plan": p.plan, "seats": p.seats}
                    for p in subscription.products
                ],
                "pending_request_id": store.pending_request_id(account_id),
            }

    def requests(self, account_id: str, state: str | None, limit: int = 200) -> list[Any]:
        """The account's requests as the contract shows them, newest first."""
        with self.db.store(lock=False) as store:
            return request_views(store, store.requests(account_id, state, limit))

    def request(self, request_id: str) -> dict[str, Any] | None:
        with self.db.store(lock=False) as store:
            row = store.request(request_id)
            return None if row is None else request_view(store, row)

    def names(self, account_id: str, user_ids: list[str]) -> dict[str, str]:
        with self.db.store(lock=False) as store:
            return store.member_names(account_id, user_ids)

    def notifications(self, request_id: str) -> list[dict[str, Any]]:
        """Who was told what about a request (R16, R17), oldest first."""
        with self.db.store(lock=False) as store:
            return request_notifications(store, request_id)

    def link(self, token: str) -> AccessLink | None:
        """The link behind a token; ``None`` for a malformed, unknown or pruned one."""
        if not well_formed(token):
            return None
        hashed = token_hash(token)
        with self.db.store(lock=False) as store:
            row = store.links.find(hashed)
        if row is None:
            return None
        return AccessLink(
            row["kind"],
            row["account_id"],
            row["user_id"],
            row["request_id"],
            row["expires_at"],
            row["used_at"],
            hashed,
        )

    def use_link(self, hashed: str, at: datetime) -> bool:
        """Use a link up; whether this call did (two racing uses: one wins)."""
        with self.db.store(lock=False) as store:
            return store.links.use(hashed, at)


def _member(row: Any) -> Member:
    return Member(
        row["account_id"], row["user_id"], row["name"], row["email"], row["role"], row["locale"]
    )
