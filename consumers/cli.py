"""The ``subreq`` command line: the worker, sending commands, migrations and reports.

Settings are read when a command needs them, not at start, so ``--help`` and ``diagram``
work whatever the environment holds. Every expected failure ends as one line on stderr:
exit 2 for configuration to fix, 1 for a database that is unreachable or lacks an answer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Literal, NoReturn

import orjson
import typer
from pika.exceptions import AMQPError

from consumers import render
from workflow import migrate, reports
from workflow.database import Database
from workflow.errors import ConfigurationError, SubreqError
from workflow.lifecycle import mermaid
from workflow.settings import Settings, load_settings

State = Literal["pending", "approved", "rejected", "cancelled", "expired", "voided"]
"""The stored states (``workflow.lifecycle.STATES``), spelled out so ``--help`` lists them."""

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
app.add_typer(db_app, name="db")
app.add_typer(requests_app, name="requests")
app.add_typer(audit_app, name="audit")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"subreq: {one_line(message)}", err=True)
    raise typer.Exit(code)


def one_line(message: str) -> str:
    """A catalog error lists one problem per line; the terminal gets them on one."""
    return "; ".join(part.strip() for part in message.splitlines() if part.strip())


@contextmanager
def reported() -> Iterator[None]:
    """Expected failures become one line and an exit code, never a traceback."""
    try:
        yield
    except ConfigurationError as exc:
        fail(str(exc), 2)
    except SubreqError as exc:
        fail(str(exc), 1)


@contextmanager
def database() -> Iterator[tuple[Settings, Database]]:
    """The settings and the database they name, released at the end of the command."""
    with reported():
        settings = load_settings()
        db = Database(settings.database_url, pool_size=1)
        try:
            with reports.database_errors(db):
                yield settings, db
        finally:
            db.dispose()


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
        typer.echo(render.to_json(views))
    elif views:
        typer.echo(render.requests_table(views, datetime.now(UTC)))
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
    if view is None:
        fail(f"no request with id {request_id}", 1)
    if as_json:
        typer.echo(render.to_json({**view, "notifications": notifications}))
    else:
        now = datetime.now(UTC)
        typer.echo(render.request_block(view, notifications, now, settings.request_ttl))


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
        typer.echo(render.to_json(entries))
    elif entries:
        typer.echo(render.audit_table(entries))
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
) -> None:
    """Consume commands and publish events until SIGTERM or Ctrl-C."""
    from consumers.worker import Worker, WorkerOptions

    configure_logging()
    with database() as (settings, db):
        current, head = migrate.current_revision(db), migrate.head_revision(db)
        if current != head:
            fail(f"the database is at revision {current}, not {head}: run `subreq db upgrade`", 1)
        options = WorkerOptions(
            consume=consume,
            relay=relay,
            prefetch=prefetch,
            batch_size=batch,
            max_deliveries=max_deliveries,
        )
        running = Worker(settings, options)
    running.run_until_signalled()


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
    typer.echo(render.to_json(reply))
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


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("transitions", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # pika logs every failed reconnect with a traceback; our own loops say it in a line.
    logging.getLogger("pika").setLevel(logging.CRITICAL)


def main() -> None:
    """Entry point of the console script."""
    app(prog_name="subreq")
