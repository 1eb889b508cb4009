"""Traces across the whole flow: a command's trace reaches its reply, its events and the
emails they ask for, through the outbox and the delivery records (OpenTelemetry SDK with
its in-memory exporter, and an OTLP/HTTP receiver for a ``subreq worker`` process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import select

from benchmarks.otlp_sink import otlp_sink
from consumers.worker import Worker, WorkerOptions
from tests.integration.amqp.support import (
    Broker,
    RawClient,
    WorkerProcess,
    running_worker,
    seed_accounts,
    submit_body,
    unpublished,
    url_of,
    wait_until,
)
from tests.integration.notifications.smtp import SmtpServer
from workflow.domain.catalog import Catalog
from workflow.persistence.database import Database
from workflow.persistence.tables import outbox
from workflow.settings import Settings

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def traceparent(trace_id: str = TRACE_ID, parent: str = PARENT) -> str:
    return f"00-{trace_id}-{parent}-01"


def submit_traced(
    client: RawClient,
    account: str,
    message_id: str,
    header: str,
    correlation_id: str | None = None,
) -> None:
    """A submit of ``account`` carrying ``header`` as its traceparent."""
    client.publish(
        "request.submit",
        submit_body(account),
        message_id=message_id,
        correlation_id=correlation_id or message_id,
        headers={"traceparent": header},
    )


def trace_of(header: Any) -> str:
    value = header.decode() if isinstance(header, bytes) else str(header)
    return value.split("-")[1]


def by_trace(found: tuple[ReadableSpan, ...], trace_id: str) -> list[ReadableSpan]:
    return [s for s in found if s.context is not None and f"{s.context.trace_id:032x}" == trace_id]


def names(found: list[ReadableSpan]) -> list[str]:
    return sorted(s.name for s in found)


def test_one_command_with_a_traceparent_is_one_trace_from_consume_to_smtp(
    amqp_url: str,
    database: Database,
    catalog: Catalog,
    broker: Broker,
    client: RawClient,
    smtp: SmtpServer,
    spans: InMemorySpanExporter,
) -> None:
    seed_accounts(database, catalog, 1, owner=True)
    events_queue = broker.events_queue()
    settings = Settings(amqp_url=amqp_url, database_url=url_of(database), smtp_url=smtp.url)
    worker = Worker(settings, WorkerOptions(notify=True))
    worker.start()
    try:
        assert worker.wait_ready(15)
        submit_traced(client, "acct-0", "traced", traceparent())
        reply = client.reply_to("traced")
        wait_until(lambda: unpublished(database) == 0, timeout=15, what="the relay")
        wait_until(lambda: len(smtp.inbox.received()) == 1, timeout=15, what="the email")
        wait_until(
            lambda: any(s.name == "smtp send" for s in spans.get_finished_spans()),
            timeout=10,
            what="the SMTP span",
        )
        events = broker.collect(events_queue, 3)
    finally:
        worker.stop()
        worker.join(20)
    assert reply.json()["ok"], reply.json()
    assert trace_of(reply.headers["traceparent"]) == TRACE_ID
    assert {trace_of(e.headers["traceparent"]) for e in events} == {TRACE_ID}

    finished = spans.get_finished_spans()
    ours = by_trace(finished, TRACE_ID)
    assert "process request.submit" in names(ours)
    # One publish span for the events the command wrote, one for notification.sent.
    assert names(ours).count("publish subreq.events") == 2
    for name in ("send notification", "smtp send"):
        assert name in names(ours), names(ours)
    assert any(s.name.startswith("publish ") and s.name != "publish subreq.events" for s in ours)
    process = next(s for s in ours if s.name == "process request.submit")
    assert process.parent is not None
    assert f"{process.parent.span_id:016x}" == PARENT  # continues the publisher's span
    assert process.attributes["messaging.system"] == "rabbitmq"
    assert process.attributes["messaging.message.id"] == "traced"
    assert process.attributes["messaging.rabbitmq.destination.routing_key"] == "request.submit"
    # The batch span links the message's context; the database transaction is its child,
    # and the message's process span links the transaction it ran in.
    batch = next(
        s
        for s in finished
        if s.name == "process subreq.commands"
        and any(f"{link.context.trace_id:032x}" == TRACE_ID for link in s.links)
    )
    transactions = [
        s
        for s in finished
        if s.name == "transaction"
        and s.parent is not None
        and s.parent.span_id == batch.context.span_id
    ]
    assert transactions
    assert transactions[0].attributes["db.system.name"] in ("sqlite", "postgresql")
    linked = {link.context.span_id for link in process.links}
    assert any(s.context.span_id in linked for s in transactions)
    # The acks and replies of the batch: one settle span, linked to the message's processing.
    settles = [s for s in finished if s.name == "settle subreq.commands"]
    assert any(link.context.span_id == process.context.span_id for s in settles for link in s.links)
    # The stored contexts: the outbox rows carry the trace, the delivery record's through
    # the event it refers to.
    with database.engine.connect() as conn:
        stored = conn.execute(select(outbox.c.type, outbox.c.traceparent)).all()
    with database.store(lock=False) as store:
        delivered = [r["traceparent"] for r in store.deliveries.recent(None, 10)]
    assert {trace_of(tp) for _, tp in stored} == {TRACE_ID}, stored
    assert [trace_of(tp) for tp in delivered] == [TRACE_ID]


def test_without_or_with_a_malformed_traceparent_each_command_starts_its_own_trace(
    amqp_url: str,
    database: Database,
    catalog: Catalog,
    client: RawClient,
    spans: InMemorySpanExporter,
) -> None:
    seed_accounts(database, catalog, 2, owner=True)
    with running_worker(amqp_url, url_of(database)):
        client.publish("request.submit", submit_body("acct-0"), message_id="a", correlation_id="a")
        submit_traced(client, "acct-1", "b", "00-not-a-trace-at-all")
        replies = [client.reply_to("a"), client.reply_to("b")]
    assert all(r.json()["ok"] for r in replies), [r.json() for r in replies]
    traces = {trace_of(r.headers["traceparent"]) for r in replies}
    assert len(traces) == 2
    processes = [s for s in spans.get_finished_spans() if s.name == "process request.submit"]
    assert {f"{s.context.trace_id:032x}" for s in processes} == traces
    assert all(s.parent is None for s in processes)  # roots of their own traces


def test_the_relay_keeps_each_event_in_its_own_commands_trace(
    amqp_url: str,
    database: Database,
    catalog: Catalog,
    broker: Broker,
    client: RawClient,
    spans: InMemorySpanExporter,
) -> None:
    seed_accounts(database, catalog, 3, owner=True)
    events_queue = broker.events_queue()
    given = {f"acct-{i}": f"{i + 1:032x}" for i in range(3)}
    with running_worker(amqp_url, url_of(database), relay=False):
        for account, trace_id in given.items():
            submit_traced(client, account, account, traceparent(trace_id))
        for account in given:
            client.reply_to(account)
    assert unpublished(database) == 6  # two events per submit, for one relay batch
    with running_worker(amqp_url, url_of(database), consume=False):
        wait_until(lambda: unpublished(database) == 0, timeout=15, what="the relay")
        received = broker.collect(events_queue, 6)
    for message in received:
        event = orjson.loads(message.body)
        assert trace_of(message.headers["traceparent"]) == given[event["account_id"]], event
    publishes = [s for s in spans.get_finished_spans() if s.name == "publish subreq.events"]
    assert {f"{s.context.trace_id:032x}" for s in publishes} == set(given.values())


def test_a_redelivered_command_does_not_fork_the_trace_of_its_events(
    amqp_url: str,
    database: Database,
    catalog: Catalog,
    client: RawClient,
    spans: InMemorySpanExporter,
) -> None:
    seed_accounts(database, catalog, 1, owner=True)
    with running_worker(amqp_url, url_of(database)):
        for n, trace_id in enumerate([TRACE_ID, "f" * 32]):
            submit_traced(client, "acct-0", "same", traceparent(trace_id), f"c{n}")
            client.reply_to(f"c{n}")
        wait_until(lambda: unpublished(database) == 0, timeout=15, what="the relay")
    with database.engine.connect() as conn:
        stored = conn.execute(select(outbox.c.traceparent)).scalars().all()
    assert stored
    assert {trace_of(tp) for tp in stored} == {TRACE_ID}


def test_a_worker_exports_its_spans_to_the_otlp_endpoint_of_the_environment(
    amqp_url: str,
    database: Database,
    catalog: Catalog,
    client: RawClient,
    tmp_path: Path,
) -> None:
    seed_accounts(database, catalog, 1, owner=True)
    worker = WorkerProcess(amqp_url, url_of(database), tmp_path, "otlp-worker")
    with otlp_sink(keep=True) as receiver:
        worker.env |= {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_SERVICE_NAME": "subreq-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        try:
            worker.start()
            submit_traced(client, "acct-0", "otlp", traceparent())
            assert client.reply_to("otlp", timeout=30).json()["ok"]

            def exported() -> set[str]:
                return {s.name for s in receiver.kept_spans() if s.trace_id.hex() == TRACE_ID}

            wait_until(
                lambda: {"process request.submit", "publish subreq.events"} <= exported(),
                timeout=20,
                what="the spans at the OTLP receiver",
            )
            assert receiver.services() == {"subreq-test"}
        finally:
            worker.kill()
