"""The sweeper loop: runs ``workflow.ops.deadlines`` every interval until told to stop
(R14, R20-R22).

The rules promise a look at least every quarter of the shortest of ``SUBREQ_REQUEST_TTL``,
``SUBREQ_REMINDER_AFTER``, ``SUBREQ_REMINDER_EVERY``, ``SUBREQ_EXPIRY_WARNING`` and
``SUBREQ_ESCALATE_AFTER`` that are set, so second-scale values work in tests; the interval
is capped at a minute and floored at 0.2 s. A failing pass is logged and tried again (the
database with backoff); it never ends the loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from consumers.amqp.connection import Backoff
from workflow.errors import TransientError
from workflow.ops.deadlines import Sweeper

log = logging.getLogger(__name__)


class SweeperLoop:
    """Sweeps until ``stop`` is set; ``on_commit`` wakes the relay after a pass that
    changed something."""

    def __init__(
        self,
        sweeper: Sweeper,
        *,
        stop: threading.Event,
        on_commit: Callable[[], None] | None = None,
        interval: float | None = None,
    ) -> None:
        self.sweeper = sweeper
        self.stop = stop
        self.on_commit = on_commit
        self.interval = interval or sweeper.interval()
        self.ready = threading.Event()
        self.passes = 0

    def run(self) -> None:
        backoff = Backoff(first=self.interval, ceiling=max(self.interval, 30.0))
        self.ready.set()
        log.info("sweeping every %.1fs", self.interval)
        while not self.stop.is_set():
            wait = self.interval
            try:
                result = self.sweeper.sweep()
            except TransientError as exc:
                wait = backoff.next()
                log.warning("sweeper: %s; trying again in %.1fs", exc, wait)
            except Exception:
                log.exception("sweeper pass failed; trying again in %.1fs", wait)
            else:
                backoff.reset()
                self.passes += 1
                if result:
                    log.info(
                        "sweeper: %d expired, %d reminded, %d warned, %d escalated",
                        len(result.expired),
                        len(result.reminded),
                        len(result.warned),
                        len(result.escalated),
                    )
                    if self.on_commit is not None:
                        self.on_commit()
            self.stop.wait(wait)
