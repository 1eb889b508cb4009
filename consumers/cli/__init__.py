"""The ``subreq`` command line: the worker, sending commands, migrations and reports
(the dead-letter commands are in ``dlq.py``, how failures end in ``exits.py``).

Settings are read when a command needs them, not at start, so ``--help`` and ``diagram``
work whatever the environment holds. Every expected failure ends as one line on stderr:
exit 2 for configuration to fix, 1 for a database that is unreachable or lacks an answer.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

import orjson
import typer

from consumers import logs, terminal
from consumers.amqp.connection import unreachable
from consumers.amqp.errors import AMQPError
from consumers.cli.dlq import dlq_app
from consumers.cli.exits import JsonFlag, database, fail, one_line, reported
from workflow.domain.lifecycle import mermaid
from workflow.errors import ConfigurationError
from workflow.ops import reports
from workflow.persistence import migrate
from workflow.persistence.database import Database
from workflow.settings import load_settings

__all__ = ["State", "app", "main", "one_line"]

WEB_POOL = 8
"""Database connections of ``subreq web`` (as many again may overflow under load)."""

State = Literal["pending", "approved", "rejected", "cancelled", "expired", "voided"]
"""The stored states (``workflow.domain.lifecycle.STATES``), spelled out for ``--help``."""

app = typer.Typer(
    name="subreq",
    help="Approval workflow for subscription change requests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Create, migrate and inspect the database schema.", no_args_is_help=True)
requests_app = typer.Typer(help="Read subscription change requests.", no_args_is_help=True)
audit_app = typer.Typer(help="Read the log of refused commands.", no_args_is_help=True)
notifications_app = typer.Typer(help="Read what the email notifier did.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(requests_app, name="requests")
app.add_typer(audit_app, name="audit")
app.add_typer(dlq_app, name="dlq")
app.add_typer(notifications_app, name="notifications")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database of SUBREQ_DATABASE_URL to the latest schema."""
    with database() as (_, db):
        migrate.upgrade(db)
        typer.echo(f"{reports.describe(db)} is at revision {migrate.current_revision(db)} (head)")


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision next to the latest one."""
    with database() as (_, db):
        current, head = migrate.current_revision(db), migrate.head_revision(db)
    typer.echo(f"current: {current or 'none (empty database)'}")
    typer.echo(f"head:    {head}")
    if current != head:
        typer.echo("run `subreq db upgrade` to migrate")


@requests_app.command("list")
def requests_list(
    account: Annotated[str, typer.Option("--account", help="Account id.")],
    state: Annotated[State | None, typer.Option(help="Only requests in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many requests.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List an account's requests, newest first."""
    with database() as (_, db), reports.reading(db) as conn:
        views = reports.account_requests(conn, account, state, limit)
    if as_json:
        typer.echo(terminal.to_json(views))
    elif views:
        typer.echo(terminal.requests_table(views, datetime.now(UTC)))
    else:
        typer.echo(f"no {state + ' ' if state else ''}requests for account {account}")


@requests_app.command("show")
def requests_show(
    request_id: Annotated[str, typer.Argument(help="Request id.")],
    as_json: JsonFlag = False,
) -> None:
    """Show one request: its changes, cost, decision, history and notifications."""
    with database() as (settings, db), reports.reading(db) as conn:
        view = reports.find_request(conn, request_id)
        notifications = reports.request_notifications(conn, request_id)
        traces = reports.history_trace_ids(conn, request_id)
    if view is None:
        fail(f"no request with id {request_id}", 1)
    for step, trace_id in zip(view["history"], traces, strict=False):
        step["trace_id"] = trace_id
    if as_json:
        typer.echo(terminal.to_json({**view, "notifications": notifications}))
    else:
        now = datetime.now(UTC)
        typer.echo(terminal.request_block(view, notifications, now, settings.request_ttl))


DeliveryStatus = Literal["pending", "sending", "retrying", "sent", "failed"]


@notifications_app.command("list")
def notifications_list(
    status: Annotated[
        DeliveryStatus | None, typer.Option(help="Only deliveries in this status.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many deliveries.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List recent email deliveries and failures, most recently changed first."""
    with database() as (_, db), reports.reading(db) as conn:
        found = reports.deliveries(conn, status, limit)
    if as_json:
        typer.echo(terminal.to_json(found))
    elif found:
        typer.echo(terminal.deliveries_table(found))
    else:
        typer.echo(f"no {status + ' ' if status else ''}notifications")


@audit_app.command("list")
def audit_list(
    account: Annotated[str | None, typer.Option(help="Only this account's commands.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many entries.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List refused commands, newest first."""
    with database() as (_, db), reports.reading(db) as conn:
        entries = reports.audit_entries(conn, account, limit)
    if as_json:
        typer.echo(terminal.to_json(entries))
    elif entries:
        typer.echo(terminal.audit_table(entries))
    else:
        typer.echo("no refused commands")


@app.command()
def diagram() -> None:
    """Print the request lifecycle as a Mermaid state diagram."""
    typer.echo(mermaid(), nl=False)


@app.command()
def worker(
    consume: Annotated[bool, typer.Option(help="Run the command consumer.")] = True,
    relay: Annotated[bool, typer.Option(help="Run the outbox relay.")] = True,
    prefetch: Annotated[int, typer.Option(min=1, help="Unacknowledged commands held.")] = 200,
    batch: Annotated[
        int, typer.Option(min=1, help="Commands per transaction (1: one per message).")
    ] = 100,
    max_deliveries: Annotated[
        int, typer.Option(min=1, help="Deliveries before a failing command is dead-lettered.")
    ] = 5,
    notify: Annotated[
        bool, typer.Option(help="Run the email notifier (SUBREQ_SMTP_URL, else .eml files).")
    ] = True,
    sweep: Annotated[
        bool, typer.Option(help="Run the sweeper: expiry, reminders, warnings, escalation.")
    ] = True,
    notify_attempts: Annotated[
        int, typer.Option(min=1, help="SMTP attempts before a notification is dead-lettered.")
    ] = 10,
) -> None:
    """Consume commands, publish events, send emails and run the timers until SIGTERM or
    Ctrl-C."""
    from consumers.notifier import RetryPolicy
    from consumers.worker import Worker, WorkerOptions

    with database() as (settings, db):
        logs.configure(settings.log_format, settings.log_level)
        current, head = migrate.current_revision(db), migrate.head_revision(db)
        if current != head:
            fail(f"the database is at revision {current}, not {head}: run `subreq db upgrade`", 1)
        problem = unreachable(settings.amqp_url)
        if problem is not None:
            fail(f"cannot reach the broker at SUBREQ_AMQP_URL: {problem}", 1)
        options = WorkerOptions(
            consume=consume,
            relay=relay,
            prefetch=prefetch,
            batch_size=batch,
            max_deliveries=max_deliveries,
            notify=notify,
            sweep=sweep,
            notify_retry=RetryPolicy(attempts=notify_attempts),
        )
        running = Worker(settings, options)
    running.run_until_signalled()


@app.command()
def web(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
) -> None:
    """Serve the console (pages and decision links) on SUBREQ_WEB_PORT until Ctrl-C."""
    from consumers import tracing
    from consumers.web.server import build, serve

    with database() as (settings, probe):
        logs.configure(settings.log_format, settings.log_level)
        current, head = migrate.current_revision(probe), migrate.head_revision(probe)
        if current != head:
            fail(f"the database is at revision {current}, not {head}: run `subreq db upgrade`", 1)
        # Pages are served from a pool of their own: one connection per request at a time.
        db = Database(settings.database_url, pool_size=WEB_POOL)
        console = build(settings, db)
        if settings.public_url is None:
            typer.echo(
                "subreq: SUBREQ_PUBLIC_URL is unset: emails carry no links, so nobody can sign in",
                err=True,
            )
        traced = tracing.configure()  # from OTEL_*: the commands it runs are traced
        try:
            serve(console, host, settings.web_port)
        finally:
            db.dispose()
            if traced:
                tracing.shutdown()


@app.command()
def send(
    routing_key: Annotated[str, typer.Argument(help="Command name, e.g. request.submit.")],
    body: Annotated[str, typer.Option("--json", help="The command body, a JSON object.")],
    wait: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for the reply (0: do not wait).")
    ] = 10.0,
    message_id: Annotated[
        str | None, typer.Option(help="Idempotency key (default: a new UUID).")
    ] = None,
) -> None:
    """Publish one command to subreq.commands and print its reply."""
    from consumers.client import NoWorker, ReplyTimeout, SubreqClient

    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        fail(f"--json is not JSON: {exc}", 2)
    with reported():
        settings = load_settings()
        try:
            client = SubreqClient(settings.amqp_url)
        except AMQPError as exc:
            fail(f"cannot reach the broker at SUBREQ_AMQP_URL: {exc!r}", 1)
        with client:
            try:
                correlation_id = client.publish(
                    routing_key, payload, message_id=message_id, reply=wait > 0
                )
                if wait == 0:
                    typer.echo(f"published {routing_key} ({correlation_id})")
                    return
                reply = client.wait(correlation_id, wait)
            except (NoWorker, ReplyTimeout) as exc:
                fail(str(exc), 1)
    typer.echo(terminal.to_json(reply))
    if not reply.get("ok"):
        raise typer.Exit(1)


@app.command()
def demo() -> None:
    """Walk through the product's story on the broker of SUBREQ_AMQP_URL."""
    from consumers.demo import BrokerUnreachable, run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    with reported():
        settings = load_settings()
        try:
            run_demo(settings, typer.echo)
        except BrokerUnreachable as exc:
            fail(str(exc), 1)


@app.command()
def health(
    timeout: Annotated[
        float, typer.Option(min=0.5, max=30, help="Seconds each probe may take.")
    ] = 3.0,
) -> None:
    """Check the database, its migrations, the broker and the command queue.

    One line per dependency; exit 0 when all are fine, else 1 (a bad setting too: Docker,
    which runs this as the worker's health check, reserves exit code 2).
    """
    from consumers.health import run_checks

    try:
        settings = load_settings()
    except ConfigurationError as exc:
        typer.echo(f"FAIL settings: {one_line(str(exc))}")
        raise typer.Exit(1) from None
    checks = run_checks(settings, timeout=timeout)
    for check in checks:
        typer.echo(check.line())
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


@app.command()
def asyncapi(as_json: JsonFlag = False) -> None:
    """Print the AsyncAPI 3.1.0 description of the wire contract (docs/asyncapi.yaml)."""
    from workflow.contract.asyncapi import document, to_json, to_yaml

    doc = document()
    typer.echo(to_json(doc) if as_json else to_yaml(doc), nl=False)


def main() -> None:
    """Entry point of the console script."""
    app(prog_name="subreq")
