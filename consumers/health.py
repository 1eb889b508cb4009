"""``subreq health``: whether a worker here could do its work now, one line per dependency.

Docker (and any orchestrator) runs it as the worker's health check: exit 0 when the
database answers at the head revision and the broker answers with the command queue
declared, 1 otherwise (never 2, which Docker reserves). Each probe gives up after a few
seconds, so a dead dependency is reported, not waited for.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from consumers.amqp.probe import DEFAULT_TIMEOUT, broker_checks
from workflow.persistence.probe import Check, database_checks
from workflow.settings import Settings

__all__ = ["DEFAULT_TIMEOUT", "broker_checks", "run_checks"]


def run_checks(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> list[Check]:
    """Every dependency of a worker, database first; both probed at once, so the worst
    case is one timeout, not their sum."""
    with ThreadPoolExecutor(2, thread_name_prefix="subreq-health") as pool:
        database = pool.submit(database_checks, settings.database_url, timeout=timeout)
        broker = pool.submit(broker_checks, settings.amqp_url, timeout=timeout)
        return [*database.result(), *broker.result()]
