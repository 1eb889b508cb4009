"""Reads and writes of the workflow's state over one connection (one transaction)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, delete, insert, select, update

from policies.facts import Account, Actor, ProductLine, Subscription
from workflow.domain.ids import new_id
from workflow.domain.lifecycle import HistoryStep
from workflow.persistence import tables as t

Row = Mapping[Any, Any]
"""A table row as handlers see it: from the database, or from a batch's cache."""


def dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z).decode()


class Store:
    """The only place that knows the tables; handlers speak in facts and rows."""

    def __init__(self, conn: Connection, *, is_postgres: bool) -> None:
        self.conn = conn
        self.is_postgres = is_postgres

    # --- accounts and members ------------------------------------------------

    def account(self, account_id: str, *, lock: bool = False) -> Row | None:
        """With ``lock``, serialises every command of this account on PostgreSQL; SQLite
        already holds the database write lock from BEGIN IMMEDIATE."""
        query = select(t.accounts).where(t.accounts.c.account_id == account_id)
        if lock and self.is_postgres:
            query = query.with_for_update()
        return self.conn.execute(query).mappings().first()

    def save_account(self, values: Mapping[str, Any], *, exists: bool) -> None:
        if exists:
            self.conn.execute(
                update(t.accounts)
                .where(t.accounts.c.account_id == values["account_id"])
                .values(**values)
            )
        else:
            self.conn.execute(insert(t.accounts).values(**values))

    def member(self, account_id: str, user_id: str) -> Row | None:
        return (
            self.conn.execute(
                select(t.members).where(
                    t.members.c.account_id == account_id, t.members.c.user_id == user_id
                )
            )
            .mappings()
            .first()
        )

    def members(self, account_id: str, roles: Iterable[str] | None = None) -> list[Row]:
        query = select(t.members).where(t.members.c.account_id == account_id)
        if roles is not None:
            query = query.where(t.members.c.role.in_(list(roles)))
        return list(self.conn.execute(query.order_by(t.members.c.user_id)).mappings())

    def save_member(self, values: Mapping[str, Any], *, exists: bool) -> None:
        if exists:
            self.conn.execute(
                update(t.members)
                .where(
                    t.members.c.account_id == values["account_id"],
                    t.members.c.user_id == values["user_id"],
                )
                .values(**values)
            )
        else:
            self.conn.execute(insert(t.members).values(**values))

    def remove_member(self, account_id: str, user_id: str) -> None:
        self.conn.execute(
            delete(t.members).where(
                t.members.c.account_id == account_id, t.members.c.user_id == user_id
            )
        )

    # --- subscriptions -------------------------------------------------------

    def subscription(self, account: Row) -> Subscription:
        rows = self.conn.execute(
            select(t.subscription_products)
            .where(t.subscription_products.c.account_id == account["account_id"])
            .order_by(t.subscription_products.c.position)
        ).mappings()
        return Subscription(
            currency=account["currency"],
            billing_cycle=account["billing_cycle"],
            products=tuple(ProductLine(r["product"], r["plan"], r["seats"]) for r in rows),
        )

    def replace_products(self, account_id: str, products: Sequence[ProductLine]) -> None:
        self.conn.execute(
            delete(t.subscription_products).where(
                t.subscription_products.c.account_id == account_id
            )
        )
        if products:
            self.conn.execute(
                insert(t.subscription_products),
                [
                    {
                        "account_id": account_id,
                        "product": p.product,
                        "position": i,
                        "plan": p.plan,
                        "seats": p.seats,
                    }
                    for i, p in enumerate(products)
                ],
            )

    # --- requests and their history -------------------------------------------

    def pending_request_id(self, account_id: str) -> str | None:
        return self.conn.execute(
            select(t.requests.c.request_id).where(
                t.requests.c.account_id == account_id, t.requests.c.state == "pending"
            )
        ).scalar()

    def request(self, request_id: str) -> Row | None:
        return (
            self.conn.execute(select(t.requests).where(t.requests.c.request_id == request_id))
            .mappings()
            .first()
        )

    def requests(self, account_id: str, state: str | None = None, limit: int = 100) -> list[Row]:
        query = select(t.requests).where(t.requests.c.account_id == account_id)
        if state is not None:
            query = query.where(t.requests.c.state == state)
        query = query.order_by(t.requests.c.created_at.desc(), t.requests.c.request_id.desc())
        return list(self.conn.execute(query.limit(limit)).mappings())

    def insert_request(self, values: Mapping[str, Any]) -> None:
        self.conn.execute(insert(t.requests).values(**values))

    def update_request(self, request_id: str, values: Mapping[str, Any]) -> None:
        self.conn.execute(
            update(t.requests).where(t.requests.c.request_id == request_id).values(**values)
        )

    def add_history(self, request_id: str, steps: Sequence[HistoryStep]) -> None:
        self.conn.execute(
            insert(t.request_transitions),
            [
                {
                    "request_id": request_id,
                    "from_state": s.from_state,
                    "to_state": s.to_state,
                    "trigger": s.trigger,
                    "actor_id": s.actor_id,
                    "at": s.at,
                    "reason": s.reason,
                }
                for s in steps
            ],
        )

    def histories(self, request_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """History of several requests in one query, oldest step first."""
        found: dict[str, list[dict[str, Any]]] = {rid: [] for rid in request_ids}
        if not request_ids:
            return found
        rows = self.conn.execute(
            select(t.request_transitions)
            .where(t.request_transitions.c.request_id.in_(list(request_ids)))
            .order_by(t.request_transitions.c.id)
        ).mappings()
        for r in rows:
            found[r["request_id"]].append(
                {
                    "from": r["from_state"],
                    "to": r["to_state"],
                    "trigger": r["trigger"],
                    "actor_id": r["actor_id"],
                    "at": r["at"],
                    "reason": r["reason"],
                }
            )
        return found

    def member_names(self, account_id: str, user_ids: Iterable[str]) -> dict[str, str]:
        ids = list(set(user_ids))
        if not ids:
            return {}
        rows = self.conn.execute(
            select(t.members.c.user_id, t.members.c.name).where(
                t.members.c.account_id == account_id, t.members.c.user_id.in_(ids)
            )
        )
        return {row.user_id: row.name for row in rows}

    # --- audit, idempotency, outbox -------------------------------------------

    def audit(self, values: Mapping[str, Any]) -> None:
        self.conn.execute(insert(t.audit_log).values(**values))

    def stored_reply(self, key: str, *, not_before: datetime | None = None) -> str | None:
        query = select(t.processed_commands.c.reply).where(t.processed_commands.c.key == key)
        if not_before is not None:
            query = query.where(t.processed_commands.c.processed_at >= not_before)
        return self.conn.execute(query).scalar()

    def forget_reply(self, key: str) -> None:
        self.conn.execute(delete(t.processed_commands).where(t.processed_commands.c.key == key))

    def store_reply(self, key: str, command: str, reply: str, at: datetime) -> None:
        self.conn.execute(
            insert(t.processed_commands).values(
                key=key, command=command, reply=reply, processed_at=at
            )
        )

    def add_event(
        self,
        type_: str,
        at: datetime,
        account_id: str,
        data: Mapping[str, Any],
        request_id: str | None = None,
    ) -> str:
        row = outbox_row(type_, at, account_id, data, request_id)
        self.conn.execute(insert(t.outbox).values(**row))
        return str(row["event_id"])


def outbox_row(
    type_: str,
    at: datetime,
    account_id: str,
    data: Mapping[str, Any],
    request_id: str | None = None,
) -> dict[str, Any]:
    """An outbox row with the event's JSON as the contract gives it."""
    event_id = new_id()
    payload: dict[str, Any] = {
        "event_id": event_id,
        "type": type_,
        "occurred_at": at,
        "account_id": account_id,
    }
    if request_id is not None:
        payload["request_id"] = request_id
    payload["data"] = data
    return {
        "event_id": event_id,
        "type": type_,
        "account_id": account_id,
        "request_id": request_id,
        "payload": dumps(payload),
        "created_at": at,
    }


def to_account(row: Row) -> Account:
    return Account(row["account_id"], row["type"], row["allows_subscription_changes"])


def to_actor(row: Row | None) -> Actor | None:
    return None if row is None else Actor(row["user_id"], row["account_id"], row["role"])
