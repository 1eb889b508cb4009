"""How a command of the ``subreq`` command line ends on an expected failure: one line
on stderr, exit 2 for configuration to fix, 1 for a dependency that failed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer

from consumers.amqp import patches
from consumers.amqp.errors import AMQPError
from workflow.errors import ConfigurationError, SubreqError
from workflow.ops import reports
from workflow.persistence.database import Database
from workflow.settings import Settings, load_settings

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


@contextmanager
def broker_reported() -> Iterator[Settings]:
    """Settings for a broker command; broker failures become one line and exit 1."""
    from consumers.amqp.errors import DeadLetterError

    with reported():
        settings = load_settings()
        patches.apply()  # dead letters may carry header values pika cannot decode alone
        try:
            yield settings
        except DeadLetterError as exc:
            fail(str(exc), 1)
        except AMQPError as exc:
            fail(f"broker failure: {exc!r}", 1)
