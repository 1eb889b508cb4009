"""Writing a store's changes: one statement per table and kind, whatever the batch size."""

from __future__ import annotations

from workflow.persistence import tables as t
from workflow.persistence.cache import Cache
from workflow.persistence.outbox import EVENT_ORDER_LOCK_KEY
from workflow.persistence.sql import Sql

REQUEST_UPDATES = (
    "state",
    "decided_at",
    "decided_by",
    "comment",
    "notified",
    "reminders",
    "reminded_at",
    "warned_at",
    "escalated_at",
)
"""The columns of a stored request that change after it is written."""
REQUEST_DEFAULTS = {**dict.fromkeys(REQUEST_UPDATES), "reminders": 0}
"""What a new request holds in those columns until a handler or the sweeper sets them."""
ACCOUNT_UPDATES = tuple(str(c.name) for c in t.accounts.columns if c.name != "account_id")


def write(sql: Sql, cache: Cache, *, events: bool = True) -> None:
    """Every change in ``cache`` so far, one statement per table and kind; the events only
    with ``events`` (the transaction's last write, see :func:`_write_events`)."""
    if cache.forgotten:
        where, param = sql.among("key", sorted(cache.forgotten))
        sql.delete(t.processed_commands, where, [param])
        cache.forgotten.clear()
    _write_accounts(sql, cache)
    _write_members(sql, cache)
    if cache.dirty_products:
        dirty = sorted(cache.dirty_products)
        where, param = sql.among("account_id", dirty)
        sql.delete(t.subscription_products, where, [param])
        sql.insert(
            t.subscription_products,
            [
                {
                    "account_id": a,
                    "product": p.product,
                    "position": i,
                    "plan": p.plan,
                    "seats": p.seats,
                }
                for a in dirty
                for i, p in enumerate(cache.products[a])
            ],
        )
        cache.dirty_products.clear()
    _write_requests(sql, cache)
    for table, rows in (
        (t.request_transitions, cache.new_history),
        (t.audit_log, cache.new_audit),
        (t.processed_commands, cache.new_replies),
    ):
        if rows:
            sql.insert(table, rows)
            rows.clear()
    if events:
        _write_events(sql, cache)


def _write_events(sql: Sql, cache: Cache) -> None:
    """The events last, under the event-order lock held until the commit that follows: ids
    become visible in the order they were drawn, so the relay's mark never passes an event
    still to commit. Nothing that could wait on another lock comes after it. The delivery
    records of the ``notification.requested`` ones go in with them: each refers to its
    event's outbox id, drawn only now."""
    if cache.new_events:
        sql.hold_exclusive(EVENT_ORDER_LOCK_KEY)
        sql.insert_with_children(
            t.outbox,
            cache.new_events,
            t.notification_deliveries,
            cache.new_deliveries,
            link="event_id",
            ref="outbox_id",
        )
        cache.new_events.clear()
        cache.new_deliveries.clear()


def _write_accounts(sql: Sql, cache: Cache) -> None:
    if not cache.dirty_accounts:
        return
    rows = [r for a in sorted(cache.dirty_accounts) if (r := cache.accounts[a])]
    new = [r for r in rows if r["account_id"] not in cache.accounts_in_db]
    old = [r for r in rows if r["account_id"] in cache.accounts_in_db]
    sql.insert(t.accounts, new)
    cache.accounts_in_db.update(r["account_id"] for r in new)
    sql.update(t.accounts, "account_id", ACCOUNT_UPDATES, old)
    cache.dirty_accounts.clear()


def _write_members(sql: Sql, cache: Cache) -> None:
    """Delete and re-insert the touched members: nothing references their rows."""
    if not cache.dirty_members:
        return
    keys = sorted(cache.dirty_members)
    sql.delete_keys(t.members, ("account_id", "user_id"), keys)
    rows = [cache.members[a][u] for a, u in keys if u in cache.members.get(a, {})]
    sql.insert(t.members, rows)
    cache.dirty_members.clear()


def _write_requests(sql: Sql, cache: Cache) -> None:
    """Updates of stored requests first, so a request leaving ``pending`` frees the
    account's slot before a new pending one is inserted (partial unique index)."""
    if not cache.dirty_requests:
        return
    dirty = sorted(cache.dirty_requests)
    old = [r for i in dirty if i in cache.requests_in_db and (r := cache.requests[i])]
    new = [r for i in dirty if i not in cache.requests_in_db and (r := cache.requests[i])]
    sql.update(t.requests, "request_id", REQUEST_UPDATES, old)
    sql.insert(t.requests, new)
    cache.requests_in_db.update(r["request_id"] for r in new)
    cache.dirty_requests.clear()
