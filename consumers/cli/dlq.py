"""``subreq dlq``: inspect and replay dead-lettered commands (subreq.commands.dead)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from consumers import terminal
from consumers.cli.exits import JsonFlag, broker_reported, fail

dlq_app = typer.Typer(
    help="Inspect and replay dead-lettered commands (subreq.commands.dead).",
    no_args_is_help=True,
)


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[
        int, typer.Option(min=1, max=65535, help="At most this many, oldest first.")
    ] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Show dead-lettered commands without removing them: routing key, message_id, why.

    They are held unacknowledged while read, then all requeued in their order: they come
    back marked redelivered, and nothing else changes.
    """
    from consumers.deadletters import describe, peek

    with broker_reported() as settings:
        letters = peek(settings.amqp_url, limit)
    if as_json:
        typer.echo(terminal.to_json([letter.as_dict() for letter in letters]))
    elif letters:
        typer.echo("\n\n".join(describe(letter) for letter in letters))
    else:
        typer.echo("no dead letters")


@dlq_app.command("replay")
def dlq_replay(
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead letter.")] = False,
    message_id: Annotated[
        str | None, typer.Option("--message-id", help="Replay the dead letters with this id.")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Republish dead letters to subreq.commands with their routing key and properties.

    Each leaves the dead letters only once the broker confirmed its copy; its message_id
    is kept, so a command that did commit earlier is answered again, not run twice.
    """
    from consumers.deadletters import DeadLetter, describe, matching, peek, replay

    if replay_all == (message_id is not None):
        fail("give either --all or --message-id ID", 2)

    def wanted(letter: DeadLetter) -> bool:
        return replay_all or letter.message_id == message_id

    shown: list[DeadLetter] = []
    with broker_reported() as settings:
        select: Callable[[DeadLetter], bool] = wanted
        if not yes:
            # Shown, then replayed on a new connection: held messages must not wait on a
            # person (no heartbeats while the prompt blocks), so the replay takes exactly
            # what was shown, matched by fingerprint, not what arrived since.
            shown = [letter for letter in peek(settings.amqp_url) if wanted(letter)]
            if not shown:
                fail(_nothing_to_replay(message_id), 1)
            typer.echo("\n\n".join(describe(letter) for letter in shown) + "\n")
            typer.confirm(f"Replay these {len(shown)} to subreq.commands?", abort=True)
            select = matching(shown)
        result = replay(settings.amqp_url, select)
    for letter in result.replayed:
        typer.echo(f"replayed {letter.routing_key} (message_id {letter.message_id or '-'})")
    if result.failure:
        fail(f"stopped: {result.failure}", 1)
    if not result.replayed:
        fail(_nothing_to_replay(message_id), 1)
    if shown and len(result.replayed) < len(shown):
        fail(f"{len(shown) - len(result.replayed)} of them had left the queue meanwhile", 1)


def _nothing_to_replay(message_id: str | None) -> str:
    return f"no dead letter with message_id {message_id}" if message_id else "no dead letters"
