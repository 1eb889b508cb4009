"""The time-driven rules: expire requests nobody decided (R14), remind the deciders (R14,
R20), warn of the expiry (R21), escalate to the other deciders (R22).

Each pass reads bounded batches of candidates through the pending requests' index by age
and handles each one in its own transaction, so a large backlog never becomes one long
transaction. Many workers may sweep at once: expiry goes through the ``expire`` handler,
which locks the account and re-checks the state (a request expires once), and each of the
other timers is judged again by its rule under the same account lock and recorded on the
request in the transaction that asks for its emails (``handlers.reminders``): whoever wins
sends them, once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from policies.timers import Timers
from workflow.app.context import CommandContext
from workflow.app.handlers.expiry import expire_request
from workflow.app.handlers.reminders import escalate, remind, warn_of_expiry
from workflow.domain.catalog import Catalog
from workflow.errors import TransientError
from workflow.persistence.database import Database
from workflow.persistence.queries import Queries
from workflow.persistence.store import Store
from workflow.settings import describe

log = logging.getLogger(__name__)

BATCH = 200
"""Requests read per query; a pass reads again while batches come back full."""


def sweep_interval(*durations: timedelta | None) -> float:
    """A quarter of the shortest duration that is set (the contract's promise), within
    0.2 s .. 60 s."""
    shortest = min(d for d in durations if d is not None)
    return min(60.0, max(0.2, shortest.total_seconds() / 4))


@dataclass(frozen=True)
class SweepResult:
    expired: list[str]
    reminded: list[str]
    warned: list[str] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        """Whether the pass changed anything."""
        return bool(self.expired or self.reminded or self.warned or self.escalated)


Candidates = Callable[[Queries, datetime], list[str]]
"""The next batch of requests a timer may be due for, oldest first."""
Action = Callable[[str, CommandContext, Timers], bool]
"""Fires a timer for one request in the given transaction; ``False``: it was not due."""


class Sweeper:
    """One process's share of the timers; ``clock`` is injectable for the tests."""

    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        *,
        timers: Timers,
        notify_billing_admins: bool = False,
        clock: Callable[[], datetime],
        batch: int = BATCH,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.timers = timers
        self.notify_billing_admins = notify_billing_admins
        self.clock = clock
        self.batch = batch

    def interval(self) -> float:
        """How long a pass may wait for the next: a quarter of the shortest timer."""
        return sweep_interval(*self.timers.durations())

    def sweep(self) -> SweepResult:
        """Expire first, so a request past its expiry is expired, never reminded; the
        reminders and the warning before the escalation, so a decider it reaches gets the
        escalation alone."""
        return SweepResult(
            self.expire_due(),
            self.remind_due(),
            warned=self.warn_due(),
            escalated=self.escalate_due(),
        )

    def _fire(self, candidates: Candidates, action: Action) -> list[str]:
        """``action`` on every candidate, batch after batch, each in a transaction of its
        own, all with the time the pass started.

        A request that fails for a reason other than the database is logged and skipped
        for this pass, so it cannot hold up the others; a database failure ends the pass
        (the caller retries with backoff)."""
        now = self.clock()
        done: list[str] = []
        tried: set[str] = set()
        while True:
            with self.db.store(lock=False) as store:
                found = candidates(store.queries, now)
            batch = [r for r in found if r not in tried]
            for request_id in batch:
                tried.add(request_id)
                try:
                    with self.db.store() as store:
                        fired = action(request_id, self._context(store, now), self.timers)
                    if fired:
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
        reason = f"nobody decided within {describe(self.timers.ttl)}"

        def expire(request_id: str, ctx: CommandContext, timers: Timers) -> bool:
            return expire_request(request_id, ctx, reason) is not None

        ttl = self.timers.ttl
        return self._fire(lambda q, now: q.due_requests(now - ttl, limit=self.batch), expire)

    def remind_due(self) -> list[str]:
        """The next reminder to the deciders of each request whose reminder is due (R14,
        R20)."""
        timers = self.timers

        def candidates(queries: Queries, now: datetime) -> list[str]:
            every = timers.reminder_every
            return queries.reminders_due(
                now - timers.reminder_after,
                below=timers.reminders_max,
                last_before=None if every is None else now - every,
                limit=self.batch,
            )

        return self._fire(candidates, remind)

    def warn_due(self) -> list[str]:
        """The expiry warning of each request that expires within the warning (R21)."""
        warning = self.timers.expiry_warning
        if warning is None:
            return []
        ahead = self.timers.ttl - warning
        return self._fire(
            lambda q, now: q.due_requests(now - ahead, limit=self.batch, unset="warned_at"),
            warn_of_expiry,
        )

    def escalate_due(self) -> list[str]:
        """The escalation of each request pending for longer than ``escalate_after`` (R22)."""
        after = self.timers.escalate_after
        if after is None:
            return []
        return self._fire(
            lambda q, now: q.due_requests(now - after, limit=self.batch, unset="escalated_at"),
            escalate,
        )
