"""Time-driven emails about a pending request: reminders (R14, R20), the expiry warning
(R21) and the escalation (R22).

Each runs in its own transaction, with the account locked as the request is read (as every
command locks it, so no lock-order deadlock): it asks its rule in ``policies.timers`` again
against the request as stored now, records that the timer fired on the request's row and
asks for the emails, all in that one transaction. Another worker's sweeper waits on the
lock, then sees the timer fired: one email per recipient, whoever wins (R18 takes it from
the delivery records on).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from policies.facts import Actor
from policies.roles import BILLING_ROLES
from policies.timers import (
    Due,
    Timeline,
    Timers,
    escalation_due,
    escalation_recipients,
    expires_at,
    expiry_warning_due,
    reminded_deciders,
    reminder_due,
    told_deciders,
)
from workflow.app.context import CommandContext
from workflow.app.handlers.lookups import request_and_account
from workflow.app.views import request_view
from workflow.contract.names import PENDING
from workflow.persistence.store import Row, to_actor

Rule = Callable[[Timeline, Timers, datetime], Due]


def timeline(row: Row) -> Timeline:
    return Timeline(
        created_at=row["created_at"],
        reminders=row["reminders"],
        reminded_at=row["reminded_at"],
        warned_at=row["warned_at"],
        escalated_at=row["escalated_at"],
    )


def _due(
    request_id: str, ctx: CommandContext, timers: Timers, rule: Rule
) -> tuple[Row, Row] | None:
    """The pending request and its locked account when ``rule`` says its timer is due;
    ``None`` when another worker fired it first or the request moved on."""
    row, account = request_and_account(ctx.store, request_id)
    if row["state"] != PENDING or not rule(timeline(row), timers, ctx.now):
        return None
    return row, account


def _deciders(ctx: CommandContext, row: Row) -> tuple[list[Actor], dict[str, Row]]:
    members = ctx.store.members(row["account_id"], BILLING_ROLES)
    by_id = {m["user_id"]: m for m in members}
    return [a for m in members if (a := to_actor(m)) is not None], by_id


def _tell(
    ctx: CommandContext,
    template: str,
    recipients: list[Row],
    row: Row,
    account: Row,
    timers: Timers,
    view: dict[str, Any] | None = None,
) -> None:
    ctx.notify(
        template,
        recipients,
        view if view is not None else request_view(ctx.store, row),
        {
            "account": account["name"],
            "request_id": row["request_id"],
            "note": row["note"],
            "expires_at": expires_at(timeline(row), timers),
        },
    )


def remind(request_id: str, ctx: CommandContext, timers: Timers) -> bool:
    """R14, R20: the next reminder to the deciders who were emailed about the request and
    have not approved it (R23: a first approver waits for a second decider)."""
    found = _due(request_id, ctx, timers, reminder_due)
    if found is None:
        return False
    row, account = found
    ctx.store.update_request(
        request_id, {"reminders": row["reminders"] + 1, "reminded_at": ctx.now}
    )
    deciders, by_id = _deciders(ctx, row)
    view = request_view(ctx.store, row)
    approvers = {a["actor_id"] for a in view["approvals"]}
    told = [by_id[a.user_id] for a in reminded_deciders(deciders, row["notified"], approvers)]
    _tell(ctx, "request_reminder", told, row, account, timers, view)
    return True


def warn_of_expiry(request_id: str, ctx: CommandContext, timers: Timers) -> bool:
    """R21: the requester and the deciders who were emailed learn when it will expire."""
    found = _due(request_id, ctx, timers, expiry_warning_due)
    if found is None:
        return False
    row, account = found
    ctx.store.update_request(request_id, {"warned_at": ctx.now})
    deciders, by_id = _deciders(ctx, row)
    told = [by_id[a.user_id] for a in told_deciders(deciders, row["notified"])]
    requester = ctx.members_by_id(row["account_id"], [row["requester_id"]])
    _tell(ctx, "request_expiry_warning", [*requester, *told], row, account, timers)
    return True


def escalate(request_id: str, ctx: CommandContext, timers: Timers) -> bool:
    """R22: every decider not emailed about the request yet gets it, once; from then on
    they count as told (reminders, the warning and a withdrawal reach them too)."""
    found = _due(request_id, ctx, timers, escalation_due)
    if found is None:
        return False
    row, account = found
    deciders, by_id = _deciders(ctx, row)
    new = [by_id[a.user_id] for a in escalation_recipients(deciders, row["notified"])]
    told = [*row["notified"], *(m["user_id"] for m in new)]
    ctx.store.update_request(request_id, {"escalated_at": ctx.now, "notified": told})
    _tell(ctx, "request_escalated", new, row, account, timers)
    return True
