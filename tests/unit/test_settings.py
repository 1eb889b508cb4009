"""The timer settings (R14, R20-R22): their defaults, what each accepts, and one clear line
naming each bad variable, with exit code 2 and no traceback from the command line."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from typer.testing import CliRunner

from consumers.cli import app
from policies.timers import Timers
from workflow.errors import ConfigurationError
from workflow.ops.deadlines import sweep_interval
from workflow.settings import load_settings

DAY = timedelta(days=1)
TIMER_VARIABLES = (
    "REQUEST_TTL",
    "REMINDER_AFTER",
    "REMINDER_EVERY",
    "REMINDERS_MAX",
    "EXPIRY_WARNING",
    "ESCALATE_AFTER",
)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SUBREQ_* setting from the environment the tests run in."""
    for name in list(os.environ):
        if name.startswith("SUBREQ_") and not name.startswith("SUBREQ_TEST_"):
            monkeypatch.delenv(name)


def settings_with(monkeypatch: pytest.MonkeyPatch, **env: str) -> Timers:
    for name, value in env.items():
        monkeypatch.setenv(f"SUBREQ_{name}", value)
    return load_settings().timers()


def problem(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        settings_with(monkeypatch, **env)
    return str(caught.value)


def test_defaults_one_reminder_a_warning_a_day_before_no_escalation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings_with(monkeypatch) == Timers(
        ttl=30 * DAY,
        reminder_after=3 * DAY,
        reminder_every=None,
        reminders_max=1,
        expiry_warning=DAY,
        escalate_after=None,
    )


def test_every_timer_set(monkeypatch: pytest.MonkeyPatch) -> None:
    timers = settings_with(
        monkeypatch,
        REQUEST_TTL="10d",
        REMINDER_EVERY="1d12h",
        REMINDERS_MAX="4",
        EXPIRY_WARNING="2d",
        ESCALATE_AFTER="5d",
    )
    assert timers.reminder_every == timedelta(days=1, hours=12)
    assert (timers.reminders_max, timers.expiry_warning) == (4, 2 * DAY)
    assert timers.escalate_after == 5 * DAY


@pytest.mark.parametrize("off", ["0", "0s", "0d", "0.0"])
def test_r21_zero_turns_the_warning_off(monkeypatch: pytest.MonkeyPatch, off: str) -> None:
    assert settings_with(monkeypatch, EXPIRY_WARNING=off).expiry_warning is None


def test_an_empty_optional_timer_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    timers = settings_with(monkeypatch, REMINDER_EVERY="", ESCALATE_AFTER=" ")
    assert (timers.reminder_every, timers.escalate_after) == (None, None)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"REMINDER_EVERY": "soon"}, "SUBREQ_REMINDER_EVERY: 'soon' is not a duration"),
        ({"REMINDER_EVERY": "0"}, "SUBREQ_REMINDER_EVERY: '0' must be longer than zero"),
        ({"REMINDERS_MAX": "0"}, "SUBREQ_REMINDERS_MAX: Input should be greater than or equal"),
        ({"REMINDERS_MAX": "two"}, "SUBREQ_REMINDERS_MAX: Input should be a valid integer"),
        ({"EXPIRY_WARNING": "-1d"}, "SUBREQ_EXPIRY_WARNING: '-1d' is not a duration"),
        ({"EXPIRY_WARNING": ""}, "SUBREQ_EXPIRY_WARNING: is empty: give a duration"),
        ({"ESCALATE_AFTER": "3 days"}, "SUBREQ_ESCALATE_AFTER: '3 days' is not a duration"),
        ({"REQUEST_TTL": "0"}, "SUBREQ_REQUEST_TTL: '0' must be longer than zero"),
        (
            {"REMINDERS_MAX": "3"},
            "SUBREQ_REMINDERS_MAX: 3 reminders need SUBREQ_REMINDER_EVERY to say how far apart",
        ),
        (
            {"REMINDER_EVERY": "1d"},
            "SUBREQ_REMINDER_EVERY: 1d repeats nothing while SUBREQ_REMINDERS_MAX is 1",
        ),
        (
            {"REQUEST_TTL": "12h"},
            "SUBREQ_EXPIRY_WARNING: 1d (the default) is not shorter than SUBREQ_REQUEST_TTL (12h)",
        ),
        (
            {"EXPIRY_WARNING": "30d"},
            "SUBREQ_EXPIRY_WARNING: 30d is not shorter than SUBREQ_REQUEST_TTL (30d)",
        ),
        (
            {"ESCALATE_AFTER": "31d"},
            "SUBREQ_ESCALATE_AFTER: 31d is not shorter than SUBREQ_REQUEST_TTL (30d)",
        ),
    ],
)
def test_a_bad_timer_is_named_with_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    message = problem(monkeypatch, **env)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_every_bad_timer_is_named_once(monkeypatch: pytest.MonkeyPatch) -> None:
    message = problem(monkeypatch, REQUEST_TTL="2s", REMINDERS_MAX="2", ESCALATE_AFTER="1m")
    parts = message.split("; ")
    assert [p.split(":")[0] for p in parts] == [
        "SUBREQ_REMINDERS_MAX",
        "SUBREQ_EXPIRY_WARNING",
        "SUBREQ_ESCALATE_AFTER",
    ]


def test_the_command_line_says_it_in_one_line_with_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBREQ_REMINDER_EVERY", "often")
    monkeypatch.setenv("SUBREQ_ESCALATE_AFTER", "-")
    result = CliRunner().invoke(app, ["worker"])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("subreq: SUBREQ_REMINDER_EVERY: 'often' is not a duration")
    assert "; SUBREQ_ESCALATE_AFTER: '-' is not a duration" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


def test_the_sweeper_looks_every_quarter_of_the_shortest_timer_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interval(**env: str) -> float:
        for name in TIMER_VARIABLES:  # only what this call sets
            monkeypatch.delenv(f"SUBREQ_{name}", raising=False)
        return sweep_interval(*settings_with(monkeypatch, **env).durations())

    assert interval() == 60.0  # a quarter of a day, capped at a minute
    assert interval(REQUEST_TTL="8s", REMINDER_AFTER="6s", EXPIRY_WARNING="0") == 1.5
    assert interval(REQUEST_TTL="8s", REMINDER_AFTER="6s", EXPIRY_WARNING="4s") == 1.0
    timers = {"REQUEST_TTL": "8s", "REMINDER_AFTER": "6s", "EXPIRY_WARNING": "0"}
    assert interval(**timers, REMINDER_EVERY="2s", REMINDERS_MAX="3") == 0.5
    assert interval(**timers, ESCALATE_AFTER="1.2s") == 0.3
    assert interval(**timers, ESCALATE_AFTER="100ms") == 0.2  # the floor
