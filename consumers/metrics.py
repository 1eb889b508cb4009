"""Prometheus metrics of a worker, served on ``SUBREQ_METRICS_PORT``.

Counters and the latency histogram are updated by the loops as they work; the
gauges about stored state (outbox backlog, pending requests) are read from the
database when Prometheus scrapes, so every worker reports the same truth.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from consumers.amqp import alarms
from workflow.errors import SubreqError
from workflow.ops.stats import snapshot
from workflow.persistence.database import Database

log = logging.getLogger(__name__)

COMMANDS = Counter(
    "subreq_commands",
    "Commands processed, by command and outcome (ok, duplicate, an error code, dead_lettered).",
    ["command", "outcome"],
)
LATENCY = Histogram(
    "subreq_command_seconds",
    "From delivery to acknowledgement, per command.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENTS = Counter("subreq_events_published", "Outbox events published to subreq.events.")
NOTIFICATIONS = Counter(
    "subreq_notifications",
    "Notifications handled by the notifier, by outcome (sent, retried, failed).",
    ["outcome"],
)
EMAIL_WINDOW = Histogram(
    "subreq_notification_record_seconds",
    "From the SMTP server's 250 to the commit recording the email sent: a notifier "
    "killed in between sends that email again.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


class StateCollector(Collector):
    """Gauges computed from the database at scrape time."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            now = snapshot(self.db)
        except (SubreqError, Exception) as exc:  # a scrape must never kill the worker
            log.warning("metrics: cannot read the database: %s", exc)
            return
        yield GaugeMetricFamily(
            "subreq_outbox_backlog", "Events committed but not yet published.", now.outbox_backlog
        )
        yield GaugeMetricFamily(
            "subreq_outbox_oldest_age_seconds",
            "Age of the oldest unpublished event.",
            now.outbox_oldest_age,
        )
        yield GaugeMetricFamily(
            "subreq_pending_requests", "Requests waiting for a decision.", now.pending_requests
        )
        yield GaugeMetricFamily(
            "subreq_pending_oldest_age_seconds",
            "How long the oldest pending request has waited.",
            now.pending_oldest_age,
        )


class BrokerAlarmCollector(Collector):
    """``subreq_broker_blocked``: 1 for each of the worker's connections the broker blocks
    now (a memory or disk alarm), 0 for the others; read at scrape time."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "subreq_broker_blocked",
            "1 while the broker blocks this connection's publishing (a resource alarm).",
            labels=["connection"],
        )
        for name, blocked in sorted(alarms.blocked().items()):
            gauge.add_metric([name], 1.0 if blocked else 0.0)
        yield gauge


_state: StateCollector | None = None


def serve(port: int, db: Database) -> int:
    """Start an endpoint (a daemon thread) and register the state gauges once per process
    (several in-process workers, as in tests, share them); returns the bound port."""
    global _state
    if _state is None:
        _state = StateCollector(db)
        REGISTRY.register(_state)
        REGISTRY.register(BrokerAlarmCollector())
    else:
        _state.db = db
    server, _thread = start_http_server(port, registry=REGISTRY)
    bound = int(server.server_address[1])
    log.info("metrics on :%d/metrics", bound)
    return bound
