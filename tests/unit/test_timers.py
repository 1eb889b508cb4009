"""The time-driven rules of ``policies.timers``, per rule id: the reminders (R14, R20), the
expiry warning (R21), the escalation (R22), and who each of them goes to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policies.facts import Actor, Role
from policies.timers import (
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

CREATED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
TIMERS = Timers(ttl=30 * DAY, reminder_after=3 * DAY)
NEW = Timeline(CREATED)


def at(days: float, seconds: float = 0) -> datetime:
    return CREATED + timedelta(days=days, seconds=seconds)


def reminded(count: int, last: datetime) -> Timeline:
    return Timeline(CREATED, reminders=count, reminded_at=last)


# --- R14: expiry and the first reminder --------------------------------------------------


def test_r14_a_request_expires_the_ttl_after_its_submit() -> None:
    assert expires_at(NEW, TIMERS) == at(30)


def test_r14_the_first_reminder_is_due_once_reminder_after_has_passed() -> None:
    early = reminder_due(NEW, TIMERS, at(3))
    assert (early.rule, early.due, early.at) == ("R14", False, at(3))
    due = reminder_due(NEW, TIMERS, at(3, 1))
    assert (due.rule, bool(due), due.at) == ("R14", True, at(3))
    assert due.reason == "due since 2026-01-08 09:00:00"


def test_r14_one_reminder_by_default() -> None:
    after = reminder_due(reminded(1, at(3, 1)), TIMERS, at(29))
    assert (after.rule, after.due, after.at) == ("R20", False, None)
    assert after.reason == "1 of 1 reminders sent"


def test_r14_nothing_is_due_past_the_expiry_the_request_expires_instead() -> None:
    late = reminder_due(NEW, TIMERS, at(30, 1))
    assert (late.rule, late.due, late.at) == ("R14", False, None)
    assert "past its expiry" in late.reason
    never = reminder_due(NEW, Timers(ttl=3 * DAY, reminder_after=3 * DAY), at(1))
    assert (never.due, never.at) == (False, None)
    assert never.reason == "the request expires before this is due"


# --- R20: repeated reminders ---------------------------------------------------------------

REPEATING = Timers(ttl=30 * DAY, reminder_after=3 * DAY, reminder_every=2 * DAY, reminders_max=3)


def test_r20_without_an_interval_the_reminder_is_not_repeated() -> None:
    timers = Timers(ttl=30 * DAY, reminder_after=3 * DAY, reminders_max=3)
    answer = reminder_due(reminded(1, at(3)), timers, at(20))
    assert (answer.rule, answer.due, answer.reason) == ("R20", False, "reminders are not repeated")


def test_r20_each_repeat_is_due_the_interval_after_the_one_before() -> None:
    assert not reminder_due(reminded(1, at(3, 5)), REPEATING, at(5, 5))
    due = reminder_due(reminded(1, at(3, 5)), REPEATING, at(5, 6))
    assert (due.rule, due.due, due.at) == ("R20", True, at(5, 5))
    assert reminder_due(reminded(2, at(5, 6)), REPEATING, at(7, 7))


def test_r20_no_more_than_the_maximum_in_all() -> None:
    answer = reminder_due(reminded(3, at(7)), REPEATING, at(20))
    assert (answer.rule, answer.due, answer.reason) == ("R20", False, "3 of 3 reminders sent")


def test_r20_an_overdue_repeat_counts_the_next_from_when_it_was_sent() -> None:
    """A sweeper that was away for days sends one reminder, and the next one an interval
    later: never a burst of the missed ones."""
    late = reminded(2, at(20))  # the second went out on day 20, though due on day 5
    assert not reminder_due(late, REPEATING, at(21))
    assert reminder_due(late, REPEATING, at(22, 1)).at == at(22)


def test_r20_no_repeat_is_due_past_the_expiry() -> None:
    answer = reminder_due(reminded(1, at(29)), REPEATING, at(31))
    assert (answer.rule, answer.due) == ("R20", False)
    assert not reminder_due(reminded(1, at(29)), REPEATING, at(29, 5))
    ending = reminder_due(reminded(1, at(28, 5)), REPEATING, at(29))
    assert ending.reason == "the request expires before this is due"


# --- R21: the expiry warning ---------------------------------------------------------------

WARNING = Timers(ttl=30 * DAY, reminder_after=3 * DAY, expiry_warning=DAY)


def test_r21_the_warning_is_due_the_warning_before_the_expiry() -> None:
    early = expiry_warning_due(NEW, WARNING, at(29))
    assert (early.rule, early.due, early.at) == ("R21", False, at(29))
    due = expiry_warning_due(NEW, WARNING, at(29, 1))
    assert (due.rule, due.due, due.at) == ("R21", True, at(29))


def test_r21_the_warning_goes_once() -> None:
    warned = Timeline(CREATED, warned_at=at(29, 1))
    answer = expiry_warning_due(warned, WARNING, at(29, 5))
    assert (answer.rule, answer.due, answer.reason) == ("R21", False, "the warning was sent")


def test_r21_zero_turns_the_warning_off() -> None:
    answer = expiry_warning_due(NEW, TIMERS, at(29, 1))
    assert (answer.rule, answer.due, answer.reason) == ("R21", False, "expiry warnings are off")


def test_r21_no_warning_past_the_expiry() -> None:
    assert not expiry_warning_due(NEW, WARNING, at(30, 1))


def test_r21_a_warning_longer_than_the_life_of_a_request_is_due_from_the_submit() -> None:
    timers = Timers(ttl=DAY, reminder_after=3 * DAY, expiry_warning=2 * DAY)
    assert not expiry_warning_due(NEW, timers, CREATED)
    assert expiry_warning_due(NEW, timers, CREATED + SECOND).at == CREATED


# --- R22: the escalation -------------------------------------------------------------------

ESCALATING = Timers(ttl=30 * DAY, reminder_after=3 * DAY, escalate_after=5 * DAY)


def test_r22_escalation_is_due_once_escalate_after_has_passed() -> None:
    assert not escalation_due(NEW, ESCALATING, at(5))
    due = escalation_due(NEW, ESCALATING, at(5, 1))
    assert (due.rule, due.due, due.at) == ("R22", True, at(5))


def test_r22_escalation_happens_once() -> None:
    escalated = Timeline(CREATED, escalated_at=at(5, 1))
    answer = escalation_due(escalated, ESCALATING, at(9))
    assert (answer.due, answer.reason) == (False, "the request was escalated")


def test_r22_unset_means_never() -> None:
    answer = escalation_due(NEW, TIMERS, at(29))
    assert (answer.rule, answer.due, answer.at) == ("R22", False, None)


def test_r22_no_escalation_past_the_expiry() -> None:
    assert not escalation_due(NEW, ESCALATING, at(31))


# --- who is told -------------------------------------------------------------------------


def member(user_id: str, role: Role) -> Actor:
    return Actor(user_id, "acme", role)


MEMBERS = [
    member("olivia", "owner"),
    member("bianca", "billing_admin"),
    member("bruno", "billing_admin"),
    member("adam", "admin"),
    member("agnes", "agent"),
]


@pytest.mark.parametrize(
    ("told", "reminded_ids"),
    [
        ({"olivia"}, ["olivia"]),
        ({"olivia", "bianca"}, ["olivia", "bianca"]),
        ({"olivia", "gone"}, ["olivia"]),  # a decider who left the account is not reminded
        ({"adam", "olivia"}, ["olivia"]),  # nor one who is no longer a decider
        (set(), []),
    ],
)
def test_r20_r21_reminders_and_warnings_go_to_the_deciders_who_were_emailed(
    told: set[str], reminded_ids: list[str]
) -> None:
    assert [m.user_id for m in told_deciders(MEMBERS, told)] == reminded_ids


def test_r20_r23_a_decider_who_approved_already_is_not_reminded() -> None:
    """The first of two approvals is a decision made: the reminder asks the other deciders."""
    told = {"olivia", "bianca", "bruno"}
    reminded = reminded_deciders(MEMBERS, told, approvers={"olivia"})
    assert [m.user_id for m in reminded] == ["bianca", "bruno"]
    assert [m.user_id for m in reminded_deciders(MEMBERS, told, approvers=())] == [
        "olivia",
        "bianca",
        "bruno",
    ]


@pytest.mark.parametrize(
    ("told", "escalated_ids"),
    [
        ({"olivia"}, ["bianca", "bruno"]),
        ({"olivia", "bianca"}, ["bruno"]),
        ({"olivia", "bianca", "bruno"}, []),
        (set(), ["olivia", "bianca", "bruno"]),  # a new owner who was never emailed, too
    ],
)
def test_r22_escalation_goes_to_every_decider_not_emailed_yet(
    told: set[str], escalated_ids: list[str]
) -> None:
    assert [m.user_id for m in escalation_recipients(MEMBERS, told)] == escalated_ids


def test_the_durations_that_are_set_pace_the_sweeper() -> None:
    assert TIMERS.durations() == [30 * DAY, 3 * DAY]
    every = Timers(30 * DAY, 3 * DAY, DAY, 2, 2 * DAY, 4 * DAY)
    assert every.durations() == [30 * DAY, 3 * DAY, DAY, 2 * DAY, 4 * DAY]
