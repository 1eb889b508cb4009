"""The integrator's guide's examples, run as they are against a worker: the Python one
with the venv's interpreter, the Node.js one with amqplib from ``make node``. Under
``CI=true`` a missing ``node`` or ``tools/node/node_modules`` fails, never skips."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.integration.amqp.support import Broker, count, running_worker, url_of
from workflow.persistence.database import Database
from workflow.persistence.tables import subscription_products

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "docs" / "examples"
NODE_MODULES = ROOT / "tools" / "node" / "node_modules"
EVENTS_QUEUE = "initech.subreq-events"
REQUEST = re.compile(r"^submitted: request (\S+) is pending$", re.MULTILINE)


def node() -> str:
    """The ``node`` binary, with amqplib installed where the example finds it."""
    found = shutil.which("node")
    missing = (
        "node is not on PATH"
        if found is None
        else "tools/node/node_modules has no amqplib: run `make node`"
        if not (NODE_MODULES / "amqplib").is_dir()
        else None
    )
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (CI=true: the Node.js example must run)", pytrace=False)
        pytest.skip(missing)
    assert found is not None
    return found


@pytest.fixture
def worker(amqp_url: str, pg: Database, broker: Broker) -> Iterator[Database]:
    """A worker with its relay (the Node.js example follows events), on PostgreSQL."""
    with running_worker(amqp_url, url_of(pg)):
        yield pg


def run(command: list[str], **env: str) -> str:
    done = subprocess.run(
        command,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    print(done.stdout)
    return done.stdout


def products(db: Database, account_id: str) -> list[tuple[str, str, int]]:
    t = subscription_products
    query = select(t.c.product, t.c.plan, t.c.seats).where(t.c.account_id == account_id)
    with db.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query.order_by(t.c.position))]  # type: ignore[misc]


def test_the_python_example_sets_up_prices_submits_is_refused_and_approves(
    worker: Database, amqp_url: str
) -> None:
    out = run([sys.executable, str(EXAMPLES / "python_client.py"), amqp_url])
    (request_id,) = REQUEST.findall(out)
    assert "account globex: created" in out
    assert "catalog: Support Professional is 115.00 USD per seat per month" in out
    assert "preview: +575.00 USD per month" in out
    assert f"refused: request_pending: pending request {request_id}" in out
    assert "refused: forbidden by R2:" in out
    assert f"approved: request {request_id} is approved by globex-owner" in out
    assert out.rstrip().endswith("history: pending -> approved by globex-owner")
    assert count(worker, "requests", account_id="globex") == 1
    assert count(worker, "requests", request_id=request_id, state="approved") == 1
    assert products(worker, "globex") == [("support", "professional", 15)]


def test_the_node_example_retries_once_approves_and_follows_its_events(
    worker: Database, amqp_url: str, broker: Broker
) -> None:
    binary = node()
    try:
        out = run(
            [binary, str(EXAMPLES / "node_client.mjs"), amqp_url, EVENTS_QUEUE],
            NODE_PATH=str(NODE_MODULES),
        )
    finally:
        broker.channel.queue_delete(EVENTS_QUEUE)
    (request_id,) = REQUEST.findall(out)
    assert "retried: same request true" in out
    assert f"refused: request_pending: pending request {request_id}" in out
    assert f"approved: request {request_id} is approved" in out
    events = re.findall(r"^event (\S+) (\S+) at ", out, re.MULTILINE)
    types = [t for t, _ in events]
    assert sorted(types) == ["request.approved", "request.submitted", "subscription.changed"]
    assert types[0] == "request.submitted"  # a request's events come in order
    assert len({event_id for _, event_id in events}) == 3
    assert "subscription: support professional x20" in out
    assert count(worker, "requests", account_id="initech") == 1  # the retry had no effect
    assert count(worker, "requests", request_id=request_id, state="approved") == 1
    assert products(worker, "initech") == [("support", "professional", 20)]
