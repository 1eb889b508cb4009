"""What a store holds in memory for one transaction: rows read, and what changed since."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from policies.facts import ProductLine


@dataclass(slots=True)
class Cache:
    """Rows by key (``None``: known not to exist), which of them are in the database, and
    the changes :func:`workflow.persistence.writing.write` has yet to write."""

    accounts: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    members: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    products: dict[str, list[ProductLine]] = field(default_factory=dict)
    requests: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    pending: dict[str, str | None] = field(default_factory=dict)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    replies: dict[str, tuple[str, datetime] | None] = field(default_factory=dict)
    accounts_in_db: set[str] = field(default_factory=set)
    requests_in_db: set[str] = field(default_factory=set)
    dirty_accounts: set[str] = field(default_factory=set)
    dirty_members: set[tuple[str, str]] = field(default_factory=set)
    dirty_products: set[str] = field(default_factory=set)
    dirty_requests: set[str] = field(default_factory=set)
    new_history: list[dict[str, Any]] = field(default_factory=list)
    new_events: list[dict[str, Any]] = field(default_factory=list)
    new_audit: list[dict[str, Any]] = field(default_factory=list)
    new_replies: list[dict[str, Any]] = field(default_factory=list)
    new_deliveries: list[dict[str, Any]] = field(default_factory=list)
    forgotten: set[str] = field(default_factory=set)
