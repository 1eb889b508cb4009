"""The Prometheus endpoint of a worker, scraped while it serves commands."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from consumers.amqp.connection import connect
from consumers.client import Forbidden, SubreqClient
from consumers.worker import Worker, WorkerOptions
from tests.integration.helpers import SEATS, account, member
from workflow.contract.names import (
    COMMANDS_QUEUE,
    DEAD_QUEUE,
    NOTIFICATIONS_DEAD_QUEUE,
)
from workflow.persistence.database import Database
from workflow.persistence.migrate import upgrade
from workflow.settings import Settings


@pytest.fixture
def worker(amqp_url: str, tmp_path: Path) -> Iterator[Worker]:
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    upgrade(Database(url))
    settings = Settings(
        amqp_url=amqp_url, database_url=url, metrics_port=0, mail_dir=tmp_path / "mail"
    )
    running = Worker(settings, WorkerOptions(notify=True))
    connection = connect(amqp_url)
    channel = connection.channel()
    # The vhost is the session's: earlier tests may have left commands or notifications.
    for queue in (COMMANDS_QUEUE, DEAD_QUEUE, NOTIFICATIONS_DEAD_QUEUE):
        try:
            channel.queue_purge(queue)
        except pika.exceptions.ChannelClosedByBroker:
            channel = connection.channel()  # not declared yet in this vhost
    connection.close()
    running.start()
    assert running.wait_ready(20)
    yield running
    running.stop()
    running.join(20)


def scrape(worker: Worker) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics") as page:
        text = page.read().decode()
    samples = {}
    for line in text.splitlines():
        match = re.match(r"^(subreq_\w+(?:\{[^}]*\})?) (\S+)$", line)
        if match:
            samples[match.group(1)] = float(match.group(2))
    return samples


def delta(after: dict[str, float], before: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_outcomes_and_read_state(worker: Worker, amqp_url: str) -> None:
    before = scrape(worker)
    with SubreqClient(amqp_url, timeout=10) as client:
        assert client.call("account.upsert", account("metrics"))["ok"]
        assert client.call("member.upsert", member("m-owner", "owner", "metrics"))["ok"]
        assert client.call("member.upsert", member("m-admin", "admin", "metrics"))["ok"]
        assert client.call("member.upsert", member("m-agent", "agent", "metrics"))["ok"]
        assert client.submit("metrics", "m-admin", SEATS).state == "pending"
        with pytest.raises(Forbidden):
            client.submit("metrics", "m-agent", SEATS)
        client.publish("no.such.command", {"x": 1}, reply=False)
    ok = 'subreq_commands_total{command="request.submit",outcome="ok"}'
    forbidden = 'subreq_commands_total{command="request.submit",outcome="forbidden"}'
    dead = 'subreq_commands_total{command="unknown",outcome="dead_lettered"}'
    mailed = 'subreq_notifications_total{outcome="sent"}'
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = scrape(worker)
        # The relay counts a batch once it committed its mark, so an empty backlog can be
        # seen a moment before the counter moves: wait for both.
        settled = (
            after.get("subreq_outbox_backlog") == 0
            and delta(after, before, mailed) >= 1
            and delta(after, before, "subreq_events_published_total") >= 3
        )
        if delta(after, before, dead) >= 1 and settled:
            break
        time.sleep(0.1)
    assert delta(after, before, ok) == 1
    assert delta(after, before, forbidden) == 1
    assert delta(after, before, dead) == 1
    assert delta(after, before, "subreq_command_seconds_count") >= 6
    assert after["subreq_pending_requests"] == 1
    assert after["subreq_pending_oldest_age_seconds"] >= 0
    assert after["subreq_outbox_backlog"] == 0
    # request.submitted, notification.requested, notification.sent (the counter is per
    # process: other relays may add to it)
    assert delta(after, before, "subreq_events_published_total") >= 3
    assert delta(after, before, mailed) == 1  # the owner, told of the submission
    assert not any(
        key.startswith("subreq_commands_total") and "no.such.command" in key for key in after
    )
