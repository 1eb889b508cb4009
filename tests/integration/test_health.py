"""``subreq health`` against the real services, closed ports and a server that never answers.

It is the worker's container health check: exit 0 only when everything answers, one line
per dependency, and an answer within a few seconds whatever the dependencies do.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from consumers.amqp.connection import connect
from consumers.amqp.topology import declare_topology
from consumers.cli import app
from consumers.health import broker_checks
from tests import services
from workflow.persistence.database import Database
from workflow.persistence.probe import database_checks

NAMES = ["database", "migrations", "broker", "command queue"]


def run_health(
    monkeypatch: pytest.MonkeyPatch, database_url: str, amqp_url: str, *args: str
) -> tuple[int, list[str]]:
    monkeypatch.setenv("SUBREQ_DATABASE_URL", database_url)
    monkeypatch.setenv("SUBREQ_AMQP_URL", amqp_url)
    result = CliRunner().invoke(app, ["health", *args])
    return result.exit_code, result.stdout.splitlines()


def verdicts(lines: list[str]) -> dict[str, str]:
    """{"database": "ok", "broker": "FAIL", ...} from the printed lines."""
    found = {}
    for line in lines:
        verdict, _, rest = line.partition(" ")
        found[rest.strip().split(":")[0]] = verdict
    return found


def url_of(db: Database) -> str:
    return db.url.render_as_string(hide_password=False)


@pytest.fixture
def declared(amqp_url: str) -> str:
    """The session's vhost with the contract's topology, as a started worker leaves it."""
    connection = connect(amqp_url, name="test-health")
    try:
        declare_topology(connection.channel())
    finally:
        connection.close()
    return amqp_url


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in accepted:
        conn.close()
    server.close()


def test_all_dependencies_answer(
    monkeypatch: pytest.MonkeyPatch, database: Database, declared: str
) -> None:
    code, lines = run_health(monkeypatch, url_of(database), declared)
    assert code == 0, lines
    assert verdicts(lines) == dict.fromkeys(NAMES, "ok")
    assert any("at head" in line for line in lines)


def test_an_unmigrated_database_fails_with_what_to_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, declared: str
) -> None:
    code, lines = run_health(monkeypatch, f"sqlite:///{tmp_path / 'empty.db'}", declared)
    assert code == 1
    assert verdicts(lines) == {
        "database": "ok",
        "migrations": "FAIL",
        "broker": "ok",
        "command queue": "ok",
    }
    assert "subreq db upgrade" in lines[1]


def test_closed_ports_fail_every_line_quickly(
    monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    started = time.monotonic()
    code, lines = run_health(
        monkeypatch,
        f"postgresql+psycopg://postgres@127.0.0.1:{closed_port}/subreq",
        f"amqp://guest:guest@127.0.0.1:{closed_port}/%2F",
    )
    assert code == 1
    assert verdicts(lines) == dict.fromkeys(NAMES, "FAIL")
    assert "unreachable" in lines[0]
    assert "not checked" in lines[1]
    assert "guest:guest" not in "\n".join(lines), "credentials are never printed"
    assert time.monotonic() - started < 10


def test_a_server_that_never_answers_times_out(silent_port: int) -> None:
    started = time.monotonic()
    db = database_checks(f"postgresql+psycopg://postgres@127.0.0.1:{silent_port}/x", timeout=1)
    broker = broker_checks(f"amqp://guest:guest@127.0.0.1:{silent_port}/%2F", timeout=1)
    assert [c.ok for c in (*db, *broker)] == [False] * 4
    assert time.monotonic() - started < 10, "each probe is bounded by its timeout"


def test_a_vhost_without_the_command_queue_fails_that_line(amqp_url: str) -> None:
    fresh = services.create_vhost(amqp_url)
    try:
        checks = broker_checks(fresh)
    finally:
        services.delete_vhost(fresh)
    assert [(c.name, c.ok) for c in checks] == [("broker", True), ("command queue", False)]
    assert "subreq worker" in checks[1].detail


def test_a_bad_setting_fails_with_exit_1_not_2(
    monkeypatch: pytest.MonkeyPatch, database: Database, declared: str
) -> None:
    """Docker reserves exit code 2 of a health check."""
    monkeypatch.setenv("SUBREQ_REQUEST_TTL", "soon")
    code, lines = run_health(monkeypatch, url_of(database), declared)
    assert code == 1
    assert lines == [lines[0]]
    assert lines[0].startswith("FAIL settings: SUBREQ_REQUEST_TTL")
