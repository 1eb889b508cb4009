"""The state store: a few queries in, a few multi-row writes out, for one command or a
batch of them in one transaction.

``preload`` reads, in about seven queries, everything the batch's commands can
touch, locking their accounts (sorted, so workers never deadlock each other).
Handlers then read and write memory; ``flush`` writes all changes with one
statement per table. A refused command's changes are undone in memory
(``begin``/``undo``), which is what a savepoint per command gave, without the
round trips. Reads the cache cannot answer flush first and ask the database.

Records outside the command path (outbox relay, email deliveries, reports, retention,
the console's links) are reached through the same store: ``store.outbox``,
``store.deliveries``, ``store.queries``, ``store.links``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from policies.facts import ProductLine, Subscription
from workflow.contract.names import NOTIFICATION_REQUESTED
from workflow.domain.lifecycle import HistoryStep
from workflow.persistence import tables as t
from workflow.persistence.cache import Cache
from workflow.persistence.deliveries import DeliveryRecords
from workflow.persistence.links import LinkRecords
from workflow.persistence.locks import account_lock_key, account_lock_keys
from workflow.persistence.outbox import OutboxRecords
from workflow.persistence.queries import Queries
from workflow.persistence.rows import delivery_row, history_entry, outbox_row
from workflow.persistence.sql import Query, Sql
from workflow.persistence.store import Row
from workflow.persistence.undo import UndoLog
from workflow.persistence.writing import REQUEST_DEFAULTS, write
from workflow.telemetry import current_traceparent


class SqlStore:
    """Implements :class:`workflow.persistence.store.Store`; valid for one transaction.
    With ``lock`` (commands), the accounts it loads stay locked until the transaction
    ends; reports read without."""

    def __init__(self, sql: Sql, *, lock: bool = True) -> None:
        self.sql = sql
        self.lock = lock
        self.outbox = OutboxRecords(sql)
        self.deliveries = DeliveryRecords(sql)
        self.queries = Queries(sql)
        self.links = LinkRecords(sql)
        self.cache = Cache()
        self._log = UndoLog()
        self.channel: str | None = None
        """How the command being run came (history and audit say it); set by its caller."""

    # --- loading -----------------------------------------------------------------

    def preload(
        self,
        account_ids: Iterable[str],
        request_ids: Iterable[str],
        keys: Iterable[str],
    ) -> None:
        """Lock what the batch will touch, then load it: the accounts named and those of the
        requests named, locked in one go (in key order, so workers never deadlock each
        other), then everything in one round trip on PostgreSQL, after the locks."""
        sql = self.sql
        request_ids = sorted(set(request_ids) - self.cache.requests.keys())
        accounts = set(account_ids) - self.cache.accounts.keys()
        keys = sorted(set(keys) - self.cache.replies.keys())
        if request_ids:
            # A request's account never changes: read without a lock, to know what to lock.
            where, param = sql.among("request_id", request_ids)
            owners = sql.select(t.requests, where, [param], names=["account_id"])
            accounts.update(r["account_id"] for r in owners)
            accounts -= self.cache.accounts.keys()
        locks = account_lock_keys(accounts) if self.lock else []
        queries: list[Query] = []
        if accounts:
            where, param = sql.among("account_id", sorted(accounts))
            queries.append(Query(t.accounts, where, [param]))
        # Idempotency records are read under the account locks: a duplicate racing with
        # its original on another worker sees the original's committed reply.
        if keys:
            where, param = sql.among("key", keys)
            queries.append(
                Query(t.processed_commands, where, [param], ("key", "reply", "processed_at"))
            )
        # Requests only after their accounts' locks: their state is final.
        wanted, wanted_params = [], []
        if request_ids:
            where, param = sql.among("request_id", request_ids)
            wanted.append(where)
            wanted_params.append(param)
        if accounts:
            where, param = sql.among("account_id", sorted(accounts))
            queries.append(Query(t.members, where, [param]))
            queries.append(
                Query(
                    t.subscription_products, where, [param], suffix=" ORDER BY account_id, position"
                )
            )
            wanted.append(f"({where} AND state = 'pending')")
            wanted_params.append(param)
        if wanted:
            requests = " OR ".join(wanted)
            queries.append(Query(t.requests, requests, wanted_params))
            queries.append(
                Query(
                    t.request_transitions,
                    f"request_id IN (SELECT request_id FROM requests WHERE {requests})",
                    wanted_params,
                    suffix=" ORDER BY id",
                )
            )
        results = iter(sql.select_all(queries, locks=locks))
        existing: list[str] = []
        if accounts:
            for row in next(results):
                account_id = row["account_id"]
                self.cache.accounts[account_id] = row
                self.cache.accounts_in_db.add(account_id)
                existing.append(account_id)
            for account_id in accounts - set(existing):
                self.cache.accounts[account_id] = None
        if keys:
            found = {r["key"]: (r["reply"], r["processed_at"]) for r in next(results)}
            for key in keys:
                self.cache.replies[key] = found.get(key)
        for account_id in existing:
            self.cache.members[account_id] = {}
            self.cache.products[account_id] = []
            self.cache.pending[account_id] = None
        if accounts:
            for row in next(results):
                self.cache.members[row["account_id"]][row["user_id"]] = row
            for row in next(results):
                self.cache.products[row["account_id"]].append(
                    ProductLine(row["product"], row["plan"], row["seats"])
                )
        if wanted:
            fresh: set[str] = set()
            for request in next(results):
                request_id = request["request_id"]
                if (
                    request_id in self.cache.requests
                    and self.cache.requests[request_id] is not None
                ):
                    continue  # already in memory, maybe changed by this batch
                self.cache.requests[request_id] = request
                self.cache.requests_in_db.add(request_id)
                self.cache.history[request_id] = []
                fresh.add(request_id)
                if request["state"] == "pending":
                    self.cache.pending[request["account_id"]] = request_id
            for request_id in request_ids:
                self.cache.requests.setdefault(request_id, None)
            for row in next(results):
                if row["request_id"] in fresh:
                    self.cache.history[row["request_id"]].append(history_entry(row))

    # --- undo, for a refused command -----------------------------------------------

    def begin(self) -> None:
        self._log.begin()

    def undo(self) -> None:
        self._log.undo()

    def commit(self) -> None:
        self._log.commit()

    # --- accounts and members --------------------------------------------------------

    def account(self, account_id: str, *, lock: bool = False) -> Row | None:
        if account_id not in self.cache.accounts:
            self.preload([account_id], [], [])
        return self.cache.accounts[account_id]

    def lock_account(self, account_id: str) -> None:
        """Only the account's lock, as a command takes it, for a write outside the command
        path that must be ordered with the account's commands; nothing else is read."""
        self.sql.lock_keys([account_lock_key(account_id)])

    def save_account(self, values: Mapping[str, Any], *, exists: bool) -> None:
        account_id = values["account_id"]
        current = self.cache.accounts.get(account_id)
        row = {**(current or {}), **values}
        for column in ("currency", "billing_cycle", "approval_second_above", "approval_currency"):
            row.setdefault(column, None)
        self._log.assign(self.cache.accounts, account_id, row)
        if current is None:
            self._log.assign(self.cache.members, account_id, {})
            self._log.assign(self.cache.products, account_id, [])
            self._log.assign(self.cache.pending, account_id, None)
        self._log.include(self.cache.dirty_accounts, account_id)

    def member(self, account_id: str, user_id: str) -> Row | None:
        found = self._account_members(account_id).get(user_id)
        return None if found is None or found.get("removed_at") is not None else found

    def was_removed(self, account_id: str, user_id: str) -> bool:
        found = self._account_members(account_id).get(user_id)
        return found is not None and found.get("removed_at") is not None

    def members(self, account_id: str, roles: Iterable[str] | None = None) -> list[Row]:
        wanted = None if roles is None else set(roles)
        found = self._account_members(account_id)
        return [
            row
            for user_id in sorted(found)
            if (row := found[user_id]).get("removed_at") is None
            and (wanted is None or row["role"] in wanted)
        ]

    def _account_members(self, account_id: str) -> dict[str, dict[str, Any]]:
        if account_id not in self.cache.accounts:
            self.preload([account_id], [], [])
        return self.cache.members.get(account_id, {})

    def save_member(self, values: Mapping[str, Any], *, exists: bool) -> None:
        members = self._account_members(values["account_id"])
        self._log.assign(members, values["user_id"], dict(values))
        self._log.include(self.cache.dirty_members, (values["account_id"], values["user_id"]))

    def remove_member(self, account_id: str, user_id: str, at: datetime) -> None:
        members = self._account_members(account_id)
        if user_id in members:
            removed = {**members[user_id], "removed_at": at, "updated_at": at}
            self._log.assign(members, user_id, removed)
            self._log.include(self.cache.dirty_members, (account_id, user_id))

    def member_names(self, account_id: str, user_ids: Iterable[str]) -> dict[str, str]:
        members = self._account_members(account_id)
        return {u: members[u]["name"] for u in set(user_ids) if u in members}

    # --- subscriptions -----------------------------------------------------------------

    def subscription(self, account: Row) -> Subscription:
        return Subscription(
            currency=account["currency"],
            billing_cycle=account["billing_cycle"],
            products=tuple(self.cache.products.get(account["account_id"], ())),
        )

    def replace_products(self, account_id: str, products: Sequence[ProductLine]) -> None:
        self._log.assign(self.cache.products, account_id, list(products))
        self._log.include(self.cache.dirty_products, account_id)

    # --- requests ----------------------------------------------------------------------

    def pending_request_id(self, account_id: str) -> str | None:
        if account_id not in self.cache.accounts:
            self.preload([account_id], [], [])
        return self.cache.pending.get(account_id)

    def request(self, request_id: str) -> Row | None:
        if request_id not in self.cache.requests:
            self.preload([], [request_id], [])
        return self.cache.requests.get(request_id)

    def requests(self, account_id: str, state: str | None = None, limit: int = 100) -> list[Row]:
        """An account's requests, newest first, from the database (after a flush)."""
        self.flush()
        sql = self.sql
        where, params = f"account_id = {sql.mark}", [account_id]
        if state is not None:
            where += f" AND state = {sql.mark}"
            params.append(state)
        rows = sql.select(
            t.requests,
            where,
            [*params, limit],
            suffix=f" ORDER BY created_at DESC, request_id DESC LIMIT {sql.mark}",
        )
        return list(rows)

    def insert_request(self, values: Mapping[str, Any]) -> None:
        row = REQUEST_DEFAULTS | dict(values)
        self._log.assign(self.cache.requests, row["request_id"], row)
        self._log.assign(self.cache.history, row["request_id"], [])
        self._after_state(row)
        self._log.include(self.cache.dirty_requests, row["request_id"])

    def update_request(self, request_id: str, values: Mapping[str, Any]) -> None:
        current = self.cache.requests[request_id]
        assert current is not None
        row = {**current, **values}
        self._log.assign(self.cache.requests, request_id, row)
        self._after_state(row)
        self._log.include(self.cache.dirty_requests, request_id)

    def _after_state(self, row: Mapping[str, Any]) -> None:
        account_id = row["account_id"]
        if row["state"] == "pending":
            self._log.assign(self.cache.pending, account_id, row["request_id"])
        elif self.cache.pending.get(account_id) == row["request_id"]:
            self._log.assign(self.cache.pending, account_id, None)

    def add_history(self, request_id: str, steps: Sequence[HistoryStep]) -> None:
        history = self.cache.history.setdefault(request_id, [])
        for step in steps:
            entry = {
                "request_id": request_id,
                "from_state": step.from_state,
                "to_state": step.to_state,
                "trigger": step.trigger,
                "actor_id": step.actor_id,
                "at": step.at,
                "reason": step.reason,
                "traceparent": current_traceparent(),
                "channel": self.channel,
            }
            self._log.append(self.cache.new_history, entry)
            self._log.append(history, history_entry(entry))

    def histories(self, request_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        missing = [r for r in request_ids if r not in self.cache.history]
        found: dict[str, list[dict[str, Any]]] = {}
        if missing:
            self.flush()
            found = {r: [] for r in missing}
            where, param = self.sql.among("request_id", missing)
            for row in self.sql.select(
                t.request_transitions, where, [param], suffix=" ORDER BY id"
            ):
                found[row["request_id"]].append(history_entry(row))
        return {
            r: self.cache.history[r] if r in self.cache.history else found[r] for r in request_ids
        }

    # --- audit, idempotency, outbox -------------------------------------------------------

    def audit(self, values: Mapping[str, Any]) -> None:
        self._log.append(self.cache.new_audit, {"channel": self.channel, **values})

    def stored_reply(self, key: str, *, not_before: datetime | None = None) -> str | None:
        if key not in self.cache.replies:
            self.preload([], [], [key])
        found = self.cache.replies[key]
        if found is None or (not_before is not None and found[1] < not_before):
            return None
        return found[0]

    def forget_reply(self, key: str) -> None:
        self._log.assign(self.cache.replies, key, None)
        self._log.include(self.cache.forgotten, key)

    def store_reply(self, key: str, command: str, reply: str, at: datetime) -> None:
        self._log.assign(self.cache.replies, key, (reply, at))
        self._log.append(
            self.cache.new_replies,
            {"key": key, "command": command, "reply": reply, "processed_at": at},
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
        self._log.append(self.cache.new_events, row)
        if type_ == NOTIFICATION_REQUESTED:  # the notifier's work, in the same transaction
            self._log.append(self.cache.new_deliveries, delivery_row(row, data))
        return str(row["event_id"])

    # --- writing -----------------------------------------------------------------------

    def flush(self) -> None:
        """Write every change so far but the events, one statement per table and kind.
        Inside a command only while it has changed nothing yet (a query reading through to
        the database). The events wait for :meth:`finish`: see ``writing._write_events``."""
        assert not self._log.changed, "flush after a command changed state"
        with self.sql.deferred():
            write(self.sql, self.cache, events=False)

    def finish(self) -> None:
        """Write every change, the events last, just before the transaction commits."""
        assert not self._log.changed, "finish while a command is under way"
        with self.sql.deferred():
            write(self.sql, self.cache)
