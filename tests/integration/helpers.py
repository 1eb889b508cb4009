"""Builders for commands and a small driver over CommandService, shared by the tests."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from sqlalchemy import func, select

from workflow.app.service import CommandService
from workflow.persistence.database import Database
from workflow.persistence.tables import metadata

T = TypeVar("T")

_ids = itertools.count(1)


def send(
    service: CommandService, routing_key: str, body: dict[str, Any], message_id: str | None = None
) -> dict[str, Any]:
    """Publish-like call: the body goes through JSON bytes, as from the broker."""
    if message_id is None:
        message_id = f"m-{next(_ids)}"
    return service.handle(routing_key, orjson.dumps(body), message_id).json()


def account(
    account_id: str = "acme",
    *,
    type_: str = "sales_assisted",
    allows: bool = True,
    products: list[dict[str, Any]] | None = None,
    currency: str = "USD",
    cycle: str = "monthly",
) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "name": f"{account_id.title()} Inc.",
        "type": type_,
        "allows_subscription_changes": allows,
        "subscription": {
            "currency": currency,
            "billing_cycle": cycle,
            "products": products
            if products is not None
            else [{"product": "support", "plan": "professional", "seats": 10}],
        },
    }


def member(user_id: str, role: str, account_id: str = "acme", locale: str = "en") -> dict[str, Any]:
    return {
        "account_id": account_id,
        "user_id": user_id,
        "name": user_id.replace("-", " ").title(),
        "email": f"{user_id}@{account_id}.example",
        "role": role,
        "locale": locale,
    }


def seed(service: CommandService, account_id: str = "acme", **account_kwargs: Any) -> None:
    """An online-assisted account with one member of every role."""
    assert send(service, "account.upsert", account(account_id, **account_kwargs))["ok"]
    for user_id, role in [
        ("owner", "owner"),
        ("billing", "billing_admin"),
        ("admin", "admin"),
        ("admin-2", "admin"),
        ("agent", "agent"),
    ]:
        reply = send(service, "member.upsert", member(f"{account_id}-{user_id}", role, account_id))
        assert reply["ok"], reply


SEATS = [{"type": "add_seats", "product": "support", "quantity": 5}]


def submit(
    service: CommandService,
    account_id: str = "acme",
    actor: str = "admin",
    changes: list[dict[str, Any]] | None = None,
    message_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body = {
        "account_id": account_id,
        "actor_id": f"{account_id}-{actor}",
        "changes": SEATS if changes is None else changes,
        **extra,
    }
    return send(service, "request.submit", body, message_id)


def decide(
    service: CommandService,
    request_id: str,
    actor: str,
    decision: str = "approve",
    comment: str | None = None,
    account_id: str = "acme",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": request_id,
        "actor_id": f"{account_id}-{actor}",
        "decision": decision,
    }
    if comment is not None:
        body["comment"] = comment
    return send(service, "request.decide", body)


def counts(db: Database) -> dict[str, int]:
    """Rows per table: a cheap fingerprint of 'nothing changed'."""
    with db.engine.connect() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
        }


def events(db: Database, type_: str | None = None) -> list[dict[str, Any]]:
    from workflow.persistence.tables import outbox

    query = select(outbox.c.payload).order_by(outbox.c.id)
    if type_ is not None:
        query = query.where(outbox.c.type == type_)
    with db.engine.connect() as conn:
        return [orjson.loads(p) for p in conn.execute(query).scalars()]


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 15.0,
    what: str = "it",
    pump: Callable[[], None] | None = None,
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), or fail naming
    ``what``. ``pump`` services a connection between polls (default: sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        if pump is None:
            time.sleep(interval)
        else:
            pump()
