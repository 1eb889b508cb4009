"""What handlers may ask of the state store, as a Protocol: the application layer knows
this, never the SQL behind it (``sqlstore.SqlStore`` is the one implementation)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from policies.facts import Account, Actor, ProductLine, Subscription, Threshold
from workflow.domain.lifecycle import HistoryStep

Row = Mapping[Any, Any]
"""A table row as handlers see it."""


class Store(Protocol):
    """One transaction's view of accounts, members, subscriptions, requests, their history,
    the audit log, idempotency records and the outbox."""

    def account(self, account_id: str, *, lock: bool = False) -> Row | None: ...
    def save_account(self, values: Mapping[str, Any], *, exists: bool) -> None: ...
    def member(self, account_id: str, user_id: str) -> Row | None:
        """A current member; ``None`` for a user who is not, or no longer, one."""
        ...

    def members(self, account_id: str, roles: Iterable[str] | None = None) -> list[Row]: ...
    def save_member(self, values: Mapping[str, Any], *, exists: bool) -> None: ...
    def remove_member(self, account_id: str, user_id: str, at: datetime) -> None: ...
    def was_removed(self, account_id: str, user_id: str) -> bool: ...
    def member_names(self, account_id: str, user_ids: Iterable[str]) -> dict[str, str]:
        """Display names, removed members' included (they still name their requests)."""
        ...

    def subscription(self, account: Row) -> Subscription: ...
    def replace_products(self, account_id: str, products: Sequence[ProductLine]) -> None: ...
    def pending_request_id(self, account_id: str) -> str | None: ...
    def request(self, request_id: str) -> Row | None: ...
    def requests(
        self, account_id: str, state: str | None = None, limit: int = 100
    ) -> list[Row]: ...
    def insert_request(self, values: Mapping[str, Any]) -> None: ...
    def update_request(self, request_id: str, values: Mapping[str, Any]) -> None: ...
    def add_history(self, request_id: str, steps: Sequence[HistoryStep]) -> None: ...
    def histories(self, request_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]: ...
    def audit(self, values: Mapping[str, Any]) -> None: ...
    def stored_reply(self, key: str, *, not_before: datetime | None = None) -> str | None: ...
    def forget_reply(self, key: str) -> None: ...
    def store_reply(self, key: str, command: str, reply: str, at: datetime) -> None: ...
    def add_event(
        self,
        type_: str,
        at: datetime,
        account_id: str,
        data: Mapping[str, Any],
        request_id: str | None = None,
    ) -> str: ...


def to_account(row: Row) -> Account:
    return Account(row["account_id"], row["type"], row["allows_subscription_changes"])


def to_threshold(row: Row) -> Threshold | None:
    """The account's two-person approval threshold (R23), ``None`` when it has none."""
    amount = row.get("approval_second_above")
    if amount is None:
        return None
    return Threshold(Decimal(amount), row.get("approval_currency"))


def to_actor(row: Row | None) -> Actor | None:
    return None if row is None else Actor(row["user_id"], row["account_id"], row["role"])
