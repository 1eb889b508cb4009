"""The ``subreq`` command line against a temporary SQLite database."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, get_args

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from consumers import terminal
from consumers.cli import State, app, one_line
from workflow.app.service import CommandService, utcnow
from workflow.contract.names import STATES
from workflow.domain.catalog import CatalogError, load_catalog
from workflow.persistence.database import Database
from workflow.persistence.migrate import head_revision

runner = CliRunner()

SUBSCRIPTION = {
    "currency": "USD",
    "billing_cycle": "monthly",
    "products": [{"product": "support", "plan": "professional", "seats": 10}],
}
ADD_SEATS = [{"type": "add_seats", "product": "support", "quantity": 5}]


def run(*args: str, code: int = 0) -> Any:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite database named the way operators name it, and no other settings."""
    for name in list(os.environ):
        if name.startswith("SUBREQ_") and not name.startswith("SUBREQ_TEST_"):
            monkeypatch.delenv(name)
    database_url = f"sqlite:///{tmp_path}/x.db"
    monkeypatch.setenv("SUBREQ_DATABASE_URL", database_url)
    return database_url


class Commands:
    """Sends commands the way the broker edge does: routing key, raw body, message id."""

    def __init__(self, url: str, clock: datetime | None = None) -> None:
        self.db = Database(url)
        fixed = None if clock is None else lambda: clock
        self.service = CommandService(self.db, load_catalog(), clock=fixed or utcnow)
        self.sent = 0

    def __call__(self, routing_key: str, body: dict[str, Any]) -> dict[str, Any]:
        self.sent += 1
        outcome = self.service.handle(routing_key, json.dumps(body).encode(), f"m{self.sent}")
        return outcome.json()

    def account(self, account_id: str) -> None:
        assert self(
            "account.upsert",
            {
                "account_id": account_id,
                "name": "Acme",
                "type": "sales_assisted",
                "allows_subscription_changes": True,
                "subscription": SUBSCRIPTION,
            },
        )["ok"]
        for user_id, name, role in (("u1", "Olivia Owner", "owner"), ("u2", "Adam Admin", "admin")):
            member = {"account_id": account_id, "user_id": user_id, "name": name, "role": role}
            assert self("member.upsert", {**member, "email": f"{user_id}@example.com"})["ok"]

    def submit(self, account_id: str) -> dict[str, Any]:
        body = {"account_id": account_id, "actor_id": "u2", "changes": ADD_SEATS}
        return self("request.submit", {**body, "note": "new hires"})


@pytest.fixture
def approved(url: str) -> Iterator[str]:
    """Account a1: a request submitted by the admin, a refused second one, approved by the
    owner. Yields the request id."""
    run("db", "upgrade")
    send = Commands(url)
    try:
        send.account("a1")
        reply = send.submit("a1")
        assert reply["result"]["request"]["summary"]["total"] == "575.00"
        request_id = reply["result"]["request"]["request_id"]
        assert send.submit("a1")["error"]["code"] == "request_pending"
        decision = {"request_id": request_id, "actor_id": "u1", "decision": "approve"}
        assert send("request.decide", {**decision, "comment": "go ahead"})["ok"]
        yield request_id
    finally:
        send.db.dispose()


@pytest.fixture
def pending(url: str) -> Iterator[str]:
    """Account a2: one request submitted 3 days, 4 hours and a minute ago."""
    run("db", "upgrade")
    send = Commands(url, clock=datetime.now(UTC) - timedelta(days=3, hours=4, minutes=1))
    try:
        send.account("a2")
        yield send.submit("a2")["result"]["request"]["request_id"]
    finally:
        send.db.dispose()


def test_db_upgrade_then_current_shows_head(url: str) -> None:
    head = head_revision(Database(url))
    assert f"at revision {head}" in run("db", "upgrade").stdout
    out = run("db", "current").stdout
    assert f"current: {head}" in out
    assert f"head:    {head}" in out
    assert "subreq db upgrade" not in out


def test_db_current_on_an_empty_database_says_to_upgrade(url: str) -> None:
    out = run("db", "current").stdout
    assert "current: none" in out
    assert "subreq db upgrade" in out


def test_requests_list_shows_a_readable_row(approved: str) -> None:
    out = run("requests", "list", "--account", "a1").stdout
    header, row = out.splitlines()
    assert header.split() == ["REQUEST", "STATE", "REQUESTER", "CHANGES", "COST", "STATUS"]
    today = datetime.now(UTC).date().isoformat()
    for part in (approved, "approved", "Adam Admin", "Add 5 seats to Support (Professional)"):
        assert part in row
    assert "575.00 USD/month" in row
    assert row.endswith(f"approved {today} by u1")


def test_requests_list_says_how_long_a_request_has_been_pending(pending: str) -> None:
    out = run("requests", "list", "--account", "a2", "--state", "pending").stdout
    assert pending in out
    assert out.rstrip().endswith("pending for 3d 4h")


def test_requests_list_filters_and_prints_json(approved: str) -> None:
    views = json.loads(run("requests", "list", "--account", "a1", "--json").stdout)
    assert [v["request_id"] for v in views] == [approved]
    assert views[0]["summary"]["total"] == "575.00"
    assert views[0]["decided_at"].endswith("Z")
    assert (
        "no pending requests"
        in run("requests", "list", "--account", "a1", "--state", "pending").stdout
    )
    assert json.loads(run("requests", "list", "--account", "nobody", "--json").stdout) == []
    assert run("requests", "list", "--account", "a1", "--state", "done", code=2).exit_code == 2


def test_requests_show_tells_the_whole_story(approved: str) -> None:
    out = run("requests", "show", approved).stdout
    for expected in (
        "State      approved",
        "Requester  Adam Admin (u2)",
        "Note       new hires",
        "  1. Add 5 seats to Support (Professional)",
        "support/professional x10 -> support/professional x15, 575.00 USD/month",
        "Total      575.00 USD per month",
        "by u1",
        "Comment    go ahead",
        "Approvals  1",
        "Olivia Owner <u1@example.com>  request_submitted",
        "Adam Admin <u2@example.com>    request_approved",
    ):
        assert expected in out
    history = out.split("History\n")[1].split("\n\n")[0].splitlines()
    assert history[0].split() == ["AT", "TRANSITION", "TRIGGER", "ACTOR", "REASON"]
    assert "(new) -> pending" in history[1]
    assert history[1].split()[-4:] == ["submit", "u2", "new", "hires"]
    assert "pending -> approved" in history[2]
    assert history[2].split()[-4:] == ["approve", "u1", "go", "ahead"]


def test_requests_show_prints_the_trace_of_each_history_step(
    url: str, spans: InMemorySpanExporter
) -> None:
    run("db", "upgrade")
    commands = Commands(url)
    try:
        commands.account("a1")
        request_id = commands.submit("a1")["result"]["request"]["request_id"]
    finally:
        commands.db.dispose()
    [process] = [s for s in spans.get_finished_spans() if s.name == "process request.submit"]
    trace_id = f"{process.context.trace_id:032x}"
    out = run("requests", "show", request_id).stdout
    history = out.split("History\n")[1].split("\n\n")[0].splitlines()
    assert history[0].split()[-1] == "TRACE"
    assert history[1].split()[-1] == trace_id
    shown = json.loads(run("requests", "show", request_id, "--json").stdout)
    assert [h["trace_id"] for h in shown["history"]] == [trace_id]


def test_requests_show_a_pending_request_with_its_expiry(pending: str) -> None:
    out = run("requests", "show", pending).stdout
    assert "Pending    for 3d 4h, expires " in out
    assert "Decided" not in out


def test_requests_show_prints_the_approvals_of_a_two_person_request(url: str) -> None:
    """R23: the first of two approvals is listed while the request waits for the second."""
    run("db", "upgrade")
    send = Commands(url)
    try:
        send.account("a3")
        threshold = {"second_above": "100.00"}
        upsert = {"account_id": "a3", "name": "Acme", "type": "sales_assisted"}
        upsert |= {"allows_subscription_changes": True, "approval": threshold}
        assert send("account.upsert", upsert)["result"]["approval"]["second_above"] == "100.00"
        request_id = send.submit("a3")["result"]["request"]["request_id"]
        decision = {"request_id": request_id, "actor_id": "u1", "decision": "approve"}
        reply = send("request.decide", {**decision, "comment": "one of two"})
        assert reply["result"]["request"]["state"] == "pending"
    finally:
        send.db.dispose()
    out = run("requests", "show", request_id).stdout
    assert "State      pending" in out
    assert "Approvals  1" in out
    [line] = [x for x in out.splitlines() if x.endswith("u1: one of two")]
    assert line.startswith("  20")  # the time it was given
    history = out.split("History\n")[1].split("\n\n")[0].splitlines()
    assert "pending -> pending" in history[2]
    shown = json.loads(run("requests", "show", request_id, "--json").stdout)
    assert [(a["actor_id"], a["comment"]) for a in shown["approvals"]] == [("u1", "one of two")]


def test_requests_show_json_includes_the_notifications(approved: str) -> None:
    shown = json.loads(run("requests", "show", approved, "--json").stdout)
    assert shown["state"] == "approved"
    assert [h["trigger"] for h in shown["history"]] == ["submit", "approve"]
    notifications = [(n["template"], n["recipient"]["user_id"]) for n in shown["notifications"]]
    assert notifications == [("request_submitted", "u1"), ("request_approved", "u2")]
    assert all(n["published_at"] is None for n in shown["notifications"])


def test_unknown_request_is_a_clear_error(approved: str) -> None:
    result = run("requests", "show", "no-such-request", code=1)
    assert result.stderr == "subreq: no request with id no-such-request\n"


def test_audit_list_shows_the_refused_submit(approved: str) -> None:
    out = run("audit", "list").stdout
    header, row = out.splitlines()
    assert header.split()[:6] == ["AT", "COMMAND", "ACTOR", "ACCOUNT", "REQUEST", "CODE"]
    assert row.split()[1:6] == ["request.submit", "u2", "a1", "-", "request_pending"]
    assert f"request {approved} is already pending" in row
    entries = json.loads(run("audit", "list", "--account", "a1", "--json").stdout)
    assert [e["code"] for e in entries] == ["request_pending"]
    assert json.loads(run("audit", "list", "--account", "other", "--json").stdout) == []


def test_diagram_is_the_lifecycle_in_mermaid() -> None:
    out = run("diagram").stdout
    assert out.startswith("stateDiagram-v2\n")
    assert "pending --> approved: approve" in out


def test_a_bad_setting_is_one_line_and_exit_2(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBREQ_REQUEST_TTL", "soon")
    result = run("requests", "list", "--account", "a1", code=2)
    assert result.stdout == ""
    assert result.stderr.startswith("subreq: SUBREQ_REQUEST_TTL: ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output
    assert "stateDiagram-v2" in run("diagram").stdout  # needs no settings


@pytest.mark.parametrize("database_url", ["nonsense", "mysql://db/x"])
def test_a_bad_database_url_is_exit_2(
    url: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUBREQ_DATABASE_URL", database_url)
    result = run("db", "upgrade", code=2)
    assert result.stderr.startswith("subreq: SUBREQ_DATABASE_URL")
    assert result.stderr.count("\n") == 1


def test_an_unreachable_database_is_exit_1(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUBREQ_DATABASE_URL", f"sqlite:///{tmp_path}/missing/dir/x.db")
    result = run("audit", "list", code=1)
    assert result.stderr.startswith("subreq: SUBREQ_DATABASE_URL: cannot use sqlite:///")
    assert result.stderr.count("\n") == 1


def test_an_unmigrated_database_says_to_upgrade(url: str) -> None:
    result = run("requests", "list", "--account", "a1", code=1)
    assert "run `subreq db upgrade` first" in result.stderr


@pytest.mark.parametrize(
    "args", [[], ["db"], ["requests"], ["requests", "list"], ["requests", "show"], ["audit"]]
)
def test_help_reads_at_every_level(args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBREQ_REQUEST_TTL", "soon")  # help needs no settings
    out = run(*args, "--help").stdout
    assert "Usage: subreq" in out
    assert "Traceback" not in out


def test_state_choices_are_the_lifecycle_states() -> None:
    assert get_args(State) == STATES


def test_durations_keep_the_two_largest_units() -> None:
    assert terminal.duration(timedelta(days=3, hours=4, minutes=59)) == "3d 4h"
    assert terminal.duration(timedelta(hours=4, minutes=12)) == "4h 12m"
    assert terminal.duration(timedelta(minutes=12, seconds=30)) == "12m"
    assert terminal.duration(timedelta(seconds=20)) == "<1m"


def test_a_catalog_error_fits_on_one_line() -> None:
    error = CatalogError("cat.json", ["products: field required", "x: extra"])
    assert one_line(str(error)) == (
        "invalid catalog cat.json: products: field required; invalid catalog cat.json: x: extra"
    )


def test_web_refuses_to_start_without_a_long_enough_secret(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run("db", "upgrade")
    missing = run("web", code=2)
    assert "SUBREQ_WEB_SECRET: required for subreq web" in missing.output
    monkeypatch.setenv("SUBREQ_WEB_SECRET", "x" * 31)
    short = run("web", code=2)
    assert "SUBREQ_WEB_SECRET: must be at least 32 bytes long" in short.output


def test_web_refuses_a_database_behind_its_migrations(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUBREQ_WEB_SECRET", "x" * 32)
    result = run("web", code=1)
    assert "run `subreq db upgrade`" in result.output
