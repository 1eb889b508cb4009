"""Processing one command: parse, deduplicate, handle, audit, reply -- in one transaction.

This is the workflow's single entry point; the broker edge hands it the raw
routing key, body and ``message_id`` and gets back the reply to publish and
whether the message belongs in the dead letters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from policies.decision import Decision, ErrorCode
from policies.lifecycle import no_other_pending
from workflow.app.context import CommandContext
from workflow.app.handlers import HANDLERS
from workflow.app.handlers.expiry import expire_request
from workflow.app.parsing import dedupe_key, encode, error_reply, parse
from workflow.contract.messages import QUERIES
from workflow.contract.names import CHANNEL_AMQP, COMMANDS_EXCHANGE, PENDING, REQUEST_SUBMIT
from workflow.domain.catalog import Catalog
from workflow.errors import Conflict, Invalid, Refused
from workflow.persistence.database import Database
from workflow.persistence.sqlstore import SqlStore
from workflow.persistence.store import Store
from workflow.telemetry import (
    Context,
    SpanKind,
    current_link,
    current_traceparent,
    messaging,
    tracer,
)


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Outcome:
    """What the edge needs: the reply body, and whether the command was unprocessable."""

    reply: bytes
    invalid: bool = False
    duplicate: bool = False
    error_reason: str | None = None
    error_code: str | None = None
    account_id: str | None = None
    request_id: str | None = None
    traceparent: str | None = None
    """The command's processing span (tracing on): its reply continues that trace."""

    def json(self) -> dict[str, Any]:
        return orjson.loads(self.reply)  # type: ignore[no-any-return]

    def traced(self, traceparent: str) -> Outcome:
        """A copy in the trace of ``traceparent``, made without ``dataclasses.replace``'s
        field-by-field rebuild (once per command with tracing on)."""
        copy = object.__new__(Outcome)
        copy.__dict__.update(self.__dict__, traceparent=traceparent)
        return copy


def _created_request_pending(store: Store, routing_key: str, stored: str) -> bool:
    """A submit deduplicated by its body is the same submit only while the request it
    created is pending: once that was decided, cancelled, expired or voided, or when the
    submit was refused, the same body is a new submit."""
    if routing_key != REQUEST_SUBMIT:
        return True
    reply = orjson.loads(stored)
    if not reply.get("ok"):
        return False
    row = store.request(reply["result"]["request"]["request_id"])
    return row is not None and row["state"] == PENDING


def _named(body: bytes | str | dict[str, Any]) -> dict[str, str] | None:
    """Who and what an unusable command names, for its audit row (R15: who tried what):
    the ``actor_id``, ``account_id`` and ``request_id`` it carries as short strings."""
    try:
        data = body if isinstance(body, dict) else orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    return {
        name: value
        for name in ("actor_id", "account_id", "request_id")
        if isinstance(value := data.get(name), str)
        and 0 < len(value) <= 128
        and "\x00" not in value
    } or None


def _may_write(commands: Sequence[Prepared]) -> bool:
    """Whether a batch needs its accounts locked: not when every command is a query (or
    unusable, which writes only its audit record), since nothing it reads is then written
    back."""
    return any(c.invalid is None and c.routing_key not in QUERIES for c in commands)


Item = tuple[str, bytes | str | dict[str, Any], str | None]
"""A delivery as the workflow sees it: routing key, body, message_id."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """A parsed command (or why it cannot be parsed) with its idempotency key."""

    routing_key: str
    command: Any
    key: str | None
    invalid: Decision | None = None
    message_id: str | None = None
    trace: Context | None = None
    """The trace the message carried (empty: start one); ``None``: the caller's."""
    channel: str = CHANNEL_AMQP
    """How it came: ``amqp``, or the console's ``web`` and ``email_link``."""
    named: dict[str, str] | None = None
    """An unusable command's actor, account and request ids, as far as it has them."""


class CommandService:
    """Runs commands against the database; one instance per process."""

    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        *,
        notify_billing_admins: bool = False,
        dedupe_window: timedelta = timedelta(minutes=10),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.notify_billing_admins = notify_billing_admins
        self.dedupe_window = dedupe_window
        self.clock = clock

    def handle(
        self,
        routing_key: str,
        body: bytes | str | dict[str, Any],
        message_id: str | None = None,
        *,
        channel: str = CHANNEL_AMQP,
    ) -> Outcome:
        """One command in its own transaction; ``channel`` is recorded in its history and
        audit rows (the console passes ``web`` or ``email_link``)."""
        return self.handle_batch([(routing_key, body, message_id)], channel=channel)[0]

    def handle_batch(
        self,
        items: Sequence[Item],
        traces: Sequence[Context] | None = None,
        *,
        channel: str = CHANNEL_AMQP,
    ) -> list[Outcome]:
        """Several commands in ONE transaction: loaded in a few queries, written in a few
        statements, each command's changes undone in memory when it is refused so it
        cannot poison the others. When the database refuses the batch at commit (another
        process won a race on an idempotency key or on R11), each command is run again
        in its own transaction and sees what the winner committed. ``traces``: the trace
        context each message carried, which its processing continues."""
        traced = traces if traces is not None else [None] * len(items)
        commands = [
            self._prepare(*item, trace=t, channel=channel)
            for item, t in zip(items, traced, strict=True)
        ]
        try:
            with self.db.store(lock=_may_write(commands)) as store:
                return self._run_batch(store, commands)
        except Conflict:
            if len(commands) > 1:
                return [
                    self.handle_batch([item], None if t is None else [t], channel=channel)[0]
                    for item, t in zip(items, traced, strict=True)
                ]
        return [self._after_conflict(commands[0])]

    def _run_batch(self, store: SqlStore, commands: Sequence[Prepared]) -> list[Outcome]:
        store.preload(
            (a for c in commands if (a := getattr(c.command, "account_id", None))),
            (r for c in commands if (r := getattr(c.command, "request_id", None))),
            (c.key for c in commands if c.key is not None),
        )
        return [self._traced(store, c) for c in commands]

    def _traced(self, store: SqlStore, prepared: Prepared) -> Outcome:
        """``_process`` in the message's own trace, linked to the transaction it runs in."""
        with tracer().start_as_current_span(
            f"process {prepared.routing_key[:64]}",
            context=prepared.trace,
            kind=SpanKind.CONSUMER,
            links=current_link(),
            attributes=messaging(
                "process", COMMANDS_EXCHANGE, prepared.routing_key[:64], prepared.message_id
            ),
        ):
            outcome = self._process(store, prepared)
            traceparent = current_traceparent()
        return outcome if traceparent is None else outcome.traced(traceparent)

    def _after_conflict(self, command: Prepared) -> Outcome:
        try:
            with self.db.store() as store:
                return self._run_batch(store, [command])[0]
        except Conflict as exc:
            if not exc.one_pending:
                raise
        # R11 decided by the unique index alone: answer as the policy would have.
        with self.db.store() as store:
            store.channel = command.channel
            refusal = self._pending_race(store, command.command)
            return self._answer(store, self.clock(), command, refusal)

    def _prepare(
        self,
        routing_key: str,
        body: bytes | str | dict[str, Any],
        message_id: str | None,
        *,
        trace: Context | None = None,
        channel: str = CHANNEL_AMQP,
    ) -> Prepared:
        try:
            command = parse(routing_key, body)
        except Invalid as exc:
            return Prepared(
                routing_key, None, None, exc.decision, message_id, trace, channel, _named(body)
            )
        key = dedupe_key(routing_key, body, message_id)
        return Prepared(routing_key, command, key, None, message_id, trace, channel)

    def _process(self, store: SqlStore, prepared: Prepared) -> Outcome:
        now = self.clock()
        store.channel = prepared.channel
        if prepared.invalid is not None:
            named = prepared.named or {}
            self._audit(
                store,
                now,
                prepared.routing_key,
                None,
                prepared.invalid,
                named.get("actor_id"),
                named.get("account_id"),
                named.get("request_id"),
            )
            return Outcome(
                encode(error_reply(prepared.invalid)),
                invalid=True,
                error_reason=prepared.invalid.message,
                error_code=str(prepared.invalid.code),
            )
        key = prepared.key
        if key is not None:
            stored = store.stored_reply(key)
            if stored is not None:
                by_body = key.startswith("sha256:")
                fresh = not by_body or (
                    store.stored_reply(key, not_before=now - self.dedupe_window) is not None
                    and _created_request_pending(store, prepared.routing_key, stored)
                )
                if fresh:
                    return Outcome(stored.encode(), duplicate=True)
                store.forget_reply(key)
        ctx = CommandContext(store, now, self.catalog, self.notify_billing_admins)
        store.begin()
        try:
            result = HANDLERS[prepared.routing_key](prepared.command, ctx)
        except Refused as refusal:
            store.undo()
            return self._answer(store, now, prepared, refusal)
        except BaseException:
            store.undo()
            raise
        store.commit()
        return self._answer(store, now, prepared, {"ok": True, "result": result})

    def _answer(
        self,
        store: Store,
        now: datetime,
        prepared: Prepared,
        answer: Refused | dict[str, Any],
    ) -> Outcome:
        """The reply, stored under the idempotency key unless the command is a query."""
        code = None
        command = prepared.command
        account_id = getattr(command, "account_id", None)
        request_id = getattr(command, "request_id", None)
        if isinstance(answer, Refused):
            code = str(answer.decision.code)
            account_id = account_id or answer.account_id
            request_id = request_id or answer.request_id
            answer = self._refused(store, now, prepared.routing_key, prepared.key, command, answer)
        else:
            request = answer["result"].get("request")
            if request is not None:
                account_id, request_id = request["account_id"], request["request_id"]
        encoded = encode(answer)
        if prepared.key is not None and prepared.routing_key not in QUERIES:
            store.store_reply(prepared.key, prepared.routing_key, encoded.decode(), now)
        return Outcome(encoded, error_code=code, account_id=account_id, request_id=request_id)

    def _pending_race(self, store: Store, command: Any) -> Refused:
        """R11 decided by the unique index: another process's submit committed first."""
        pending = store.pending_request_id(command.account_id)
        if pending is not None:
            decision = no_other_pending(pending)
        else:  # the winner is no longer pending: it was decided at once
            decision = Decision.deny(
                "R11",
                ErrorCode.REQUEST_PENDING,
                "another request was submitted for this account at the same moment",
            )
        return Refused(decision, account_id=command.account_id)

    def _refused(
        self,
        store: Store,
        now: datetime,
        routing_key: str,
        key: str | None,
        command: Any,
        refusal: Refused,
    ) -> dict[str, Any]:
        self._audit(
            store,
            now,
            routing_key,
            key,
            refusal.decision,
            getattr(command, "actor_id", None),
            refusal.account_id or getattr(command, "account_id", None),
            refusal.request_id or getattr(command, "request_id", None),
        )
        return error_reply(refusal.decision)

    @staticmethod
    def _audit(
        store: Store,
        now: datetime,
        routing_key: str,
        key: str | None,
        decision: Decision,
        actor_id: str | None,
        account_id: str | None,
        request_id: str | None,
    ) -> None:
        """R15: every refused command, append-only."""
        store.audit(
            {
                "at": now,
                "command": routing_key.replace("\x00", "\\x00")[:64],
                "idempotency_key": key,
                "actor_id": actor_id,
                "account_id": account_id,
                "request_id": request_id,
                "code": str(decision.code),
                "message": decision.message,
                "details": [d.as_detail() for d in decision.denials],
            }
        )

    def expire(self, request_id: str, reason: str) -> dict[str, Any] | None:
        """Expire one pending request (R14) in its own transaction."""
        with self.db.store() as store:
            ctx = CommandContext(store, self.clock(), self.catalog, self.notify_billing_admins)
            return expire_request(request_id, ctx, reason)
