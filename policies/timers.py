"""Time-driven rules (R14, R20, R21, R22): is a reminder, an expiry warning or an escalation
due for a pending request now, and who does it go to?

The sweeper asks these questions twice: its query picks candidates by age, and the answer
that counts is given again under the account's lock, from the request as stored then, so
whichever worker gets there first fires the timer and the others see it fired. Nothing is
due once a request is past its expiry: it expires instead (R14), and nobody is told to
decide a request that is about to be gone.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from policies.facts import Actor
from policies.roles import BILLING_ROLES


@dataclass(frozen=True, slots=True)
class Timers:
    """An installation's durations. ``None`` turns a timer off: no repeated reminder
    (R20), no expiry warning (R21), no escalation (R22)."""

    ttl: timedelta
    reminder_after: timedelta
    reminder_every: timedelta | None = None
    reminders_max: int = 1
    expiry_warning: timedelta | None = None
    escalate_after: timedelta | None = None

    def durations(self) -> list[timedelta]:
        """Every duration that is set: the sweeper looks at least every quarter of the
        shortest."""
        optional = (self.reminder_every, self.expiry_warning, self.escalate_after)
        return [self.ttl, self.reminder_after, *(d for d in optional if d is not None)]


@dataclass(frozen=True, slots=True)
class Timeline:
    """What a pending request went through so far."""

    created_at: datetime
    reminders: int = 0
    """Reminders sent so far: the first (R14) and the repeats (R20)."""
    reminded_at: datetime | None = None
    """When the latest of them went out."""
    warned_at: datetime | None = None
    escalated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Due:
    """A timer's answer, tied to the rule that sets it: due now or not, why, and ``at``,
    the moment after which it is due; ``None`` when it never will be. Every duration is
    "after": a timer is due once its moment has passed, as the sweeper's queries ask."""

    rule: str
    due: bool
    reason: str
    at: datetime | None = None

    def __bool__(self) -> bool:
        return self.due


def expires_at(timeline: Timeline, timers: Timers) -> datetime:
    """R14: a pending request expires once ``ttl`` has passed since it was submitted."""
    return timeline.created_at + timers.ttl


def _when(rule: str, at: datetime, now: datetime, timeline: Timeline, timers: Timers) -> Due:
    """Due once ``at`` has passed, unless the request is past its expiry by then."""
    ends = expires_at(timeline, timers)
    if now > ends:
        return Due(rule, False, f"the request is past its expiry ({ends:%Y-%m-%d %H:%M:%S})")
    if at >= ends:
        return Due(rule, False, "the request expires before this is due")
    if now <= at:
        return Due(rule, False, f"due after {at:%Y-%m-%d %H:%M:%S}", at)
    return Due(rule, True, f"due since {at:%Y-%m-%d %H:%M:%S}", at)


def reminder_due(timeline: Timeline, timers: Timers, now: datetime) -> Due:
    """R14: the first reminder ``reminder_after`` the submit; R20: each further one
    ``reminder_every`` after the one before, up to ``reminders_max`` in all. A sweeper that
    was away sends one overdue reminder, not the ones it missed: the next counts from it."""
    if timeline.reminders >= timers.reminders_max:
        sent = timeline.reminders
        return Due("R20", False, f"{sent} of {timers.reminders_max} reminders sent")
    if timeline.reminders == 0 or timeline.reminded_at is None:
        return _when("R14", timeline.created_at + timers.reminder_after, now, timeline, timers)
    if timers.reminder_every is None:
        return Due("R20", False, "reminders are not repeated")
    return _when("R20", timeline.reminded_at + timers.reminder_every, now, timeline, timers)


def expiry_warning_due(timeline: Timeline, timers: Timers, now: datetime) -> Due:
    """R21: once, ``expiry_warning`` before the request expires."""
    if timers.expiry_warning is None:
        return Due("R21", False, "expiry warnings are off")
    if timeline.warned_at is not None:
        return Due("R21", False, "the warning was sent")
    at = expires_at(timeline, timers) - timers.expiry_warning
    return _when("R21", max(at, timeline.created_at), now, timeline, timers)


def escalation_due(timeline: Timeline, timers: Timers, now: datetime) -> Due:
    """R22: once, ``escalate_after`` the submit."""
    if timers.escalate_after is None:
        return Due("R22", False, "escalation is off")
    if timeline.escalated_at is not None:
        return Due("R22", False, "the request was escalated")
    return _when("R22", timeline.created_at + timers.escalate_after, now, timeline, timers)


def told_deciders(members: Sequence[Actor], told: Collection[str]) -> list[Actor]:
    """R20, R21: reminders and the warning go to the deciders who were emailed about the
    request (on submit, R16, or by escalation, R22) and still hold a decider's role."""
    return [m for m in members if m.role in BILLING_ROLES and m.user_id in told]


def reminded_deciders(
    members: Sequence[Actor], told: Collection[str], approvers: Collection[str]
) -> list[Actor]:
    """R20 with R23: the deciders told about the request, but for those who approved it
    already (the first of two approvals): they have decided; the reminder asks the others."""
    return [m for m in told_deciders(members, told) if m.user_id not in approvers]


def escalation_recipients(members: Sequence[Actor], told: Collection[str]) -> list[Actor]:
    """R22: every decider of the account who was not emailed about the request yet."""
    return [m for m in members if m.role in BILLING_ROLES and m.user_id not in told]
