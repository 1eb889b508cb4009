"""The time-driven side of R14: expire requests nobody decided, remind the deciders once.

Each pass reads a bounded batch of candidates through ``ix_requests_state_created``
and handles each one in its own transaction, so a large backlog never becomes one
long transaction. Many workers may sweep at once: expiry goes through the
``expire`` handler, which locks the account and re-checks the state (a request
expires once), and a reminder is recorded under the same account lock, only while
``reminded_at`` is still empty, in the transaction that asks for it (one reminder,
whoever wins).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from workflow.app.context import CommandContext
from workflow.app.handlers.expiry import expire_request
from workflow.app.handlers.lookups import request_and_account
from workflow.app.views import request_view
from workflow.contract.names import PENDING
from workflow.domain.catalog import Catalog
from workflow.errors import TransientError
from workflow.persistence.database import Database
from workflow.persistence.store import Store

log = logging.getLogger(__name__)

BATCH = 200
"""Requests read per query; a pass reads again while batches come back full."""


def sweep_interval(ttl: timedelta, reminder_after: timedelta) -> float:
    """A quarter of the shorter duration (the contract's promise), within 0.2 s .. 60 s."""
    return min(60.0, max(0.2, min(ttl, reminder_after).total_seconds() / 4))


def describe(delta: timedelta) -> str:
    """``30d``, ``3d 4h``, ``2s``: how long a request may wait, in the settings' own units."""
    seconds = int(delta.total_seconds())
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2]) or f"{delta.total_seconds():g}s"


@dataclass(frozen=True)
class SweepResult:
    expired: list[str]
    reminded: list[str]


class Sweeper:
    """One process's share of the timers; ``clock`` is injectable for the tests."""

    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        *,
        ttl: timedelta,
        reminder_after: timedelta,
        notify_billing_admins: bool = False,
        clock: Callable[[], datetime],
        batch: int = BATCH,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.ttl = ttl
        self.reminder_after = reminder_after
        self.notify_billing_admins = notify_billing_admins
        self.clock = clock
        self.batch = batch

    def sweep(self) -> SweepResult:
        """Expire first, so a request past both deadlines is expired, not reminded."""
        return SweepResult(self.expire_due(), self.remind_due())

    def _due(self, cutoff: datetime, *, unreminded: bool) -> list[str]:
        """The next batch of pending requests created before ``cutoff``, oldest first."""
        with self.db.store(lock=False) as store:
            return store.queries.due_requests(cutoff, unreminded=unreminded, limit=self.batch)

    def _each_due(
        self, cutoff: datetime, action: Callable[[str], bool], *, unreminded: bool = False
    ) -> list[str]:
        """``action`` on every due request, batch after batch, each in its own transaction.

        A request that fails for a reason other than the database is logged and skipped
        for this pass, so it cannot hold up the others; a database failure ends the pass
        (the caller retries with backoff)."""
        done: list[str] = []
        tried: set[str] = set()
        while True:
            batch = [r for r in self._due(cutoff, unreminded=unreminded) if r not in tried]
            for request_id in batch:
                tried.add(request_id)
                try:
                    if action(request_id):
                        done.append(request_id)
                except TransientError:
                    raise
                except Exception:
                    log.exception("sweeper: request %s failed; skipped this pass", request_id)
            if len(batch) < self.batch:
                return done

    def _context(self, store: Store, now: datetime) -> CommandContext:
        return CommandContext(store, now, self.catalog, self.notify_billing_admins)

    def expire_due(self) -> list[str]:
        """Requests pending for longer than the TTL end ``expired``; the handler writes the
        history, the event and the requester's notification."""
        now = self.clock()
        reason = f"nobody decided within {describe(self.ttl)}"

        def expire(request_id: str) -> bool:
            with self.db.store() as store:
                return expire_request(request_id, self._context(store, now), reason) is not None

        return self._each_due(now - self.ttl, expire)

    def remind_due(self) -> list[str]:
        """One reminder to the deciders of each request pending for longer than
        ``reminder_after`` (R14)."""
        now = self.clock()
        return self._each_due(
            now - self.reminder_after, lambda rid: self._remind(rid, now), unreminded=True
        )

    def _remind(self, request_id: str, now: datetime) -> bool:
        with self.db.store() as store:
            # The account is locked as the request is read, as every command locks it: no
            # other sweeper can remind it meanwhile, and no lock-order deadlock.
            row, account = request_and_account(store, request_id)
            if row["state"] != PENDING or row["reminded_at"] is not None:
                return False
            ctx = self._context(store, now)
            deciders = ctx.deciders(row["account_id"])
            # Whoever is reminded was told about the request: a withdrawal tells them too.
            told = list(dict.fromkeys([*row["notified"], *(d["user_id"] for d in deciders)]))
            store.update_request(request_id, {"reminded_at": now, "notified": told})
            view = request_view(store, row)
            ctx.notify(
                "request_reminder",
                deciders,
                view,
                {
                    "account": account["name"],
                    "request_id": request_id,
                    "note": row["note"],
                    "expires_at": row["created_at"] + self.ttl,
                },
            )
            return True
