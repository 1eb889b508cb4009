"""Expiry and reminders with second-scale durations across two ``subreq worker`` processes
(R14), their mails delivered through a real SMTP server exactly once (R18)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.notifier import STARTED
from tests.integration.helpers import events, seed, submit, wait_until
from tests.integration.notifications.smtp import SmtpServer
from tests.integration.notifications.support import Queues, url_of
from workflow.app.service import CommandService
from workflow.domain.catalog import Catalog
from workflow.persistence.database import Database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SUBREQ = Path(sys.executable).with_name("subreq")


@pytest.fixture
def workers(
    mail_amqp_url: str, pg: Database, smtp: SmtpServer, tmp_path: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    env = {
        **os.environ,
        "SUBREQ_AMQP_URL": mail_amqp_url,
        "SUBREQ_DATABASE_URL": url_of(pg),
        "SUBREQ_SMTP_URL": smtp.url,
        "SUBREQ_REQUEST_TTL": "5s",
        "SUBREQ_REMINDER_AFTER": "1s",
        "SUBREQ_EXPIRY_WARNING": "0",  # a day is longer than the TTL
    }
    started: list[subprocess.Popen[bytes]] = []
    logs = []
    for name in ("a", "b"):
        log = (tmp_path / f"worker-{name}.log").open("wb")
        logs.append(log)
        started.append(
            subprocess.Popen(
                [str(SUBREQ), "worker", "--no-consume"],
                env=env,
                cwd=tmp_path,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    for log in logs:
        log.close()
    for name in ("a", "b"):
        print(f"--- worker {name} ---")
        print((tmp_path / f"worker-{name}.log").read_text(errors="replace")[-3000:])


def test_two_workers_remind_once_and_expire_once(
    pg: Database,
    catalog: Catalog,
    smtp: SmtpServer,
    queues: Queues,
    workers: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    service = CommandService(pg, catalog)
    accounts = [f"acct{n}" for n in range(3)]
    for account_id in accounts:
        seed(service, account_id)
    # Both notifiers (hence both sweepers) running before the clock starts.
    logs = [tmp_path / f"worker-{name}.log" for name in ("a", "b")]
    wait_until(
        lambda: all(STARTED in log.read_text(errors="replace") for log in logs),
        timeout=30,
        what="both workers to start",
    )
    for account_id in accounts:
        assert submit(service, account_id)["ok"]

    wait_until(lambda: len(events(pg, "request.expired")) == 3, timeout=30, what="3 expiries")
    # submitted + reminder to each owner, expired to each admin
    wait_until(lambda: len(smtp.inbox.received()) >= 9, timeout=20, what="9 mails")
    time.sleep(1.0)  # several more sweeps by both workers: nothing more may happen
    assert all(process.poll() is None for process in workers), "a worker died"

    assert len(events(pg, "request.expired")) == 3
    templates = Counter(
        (n["data"]["template"], n["data"]["recipient"]["user_id"])
        for n in events(pg, "notification.requested")
    )
    for account_id in accounts:
        assert templates[("request_submitted", f"{account_id}-owner")] == 1
        assert templates[("request_reminder", f"{account_id}-owner")] == 1
        assert templates[("request_expired", f"{account_id}-admin")] == 1
    assert sum(templates.values()) == 9

    received = smtp.inbox.received()
    assert len(received) == 9
    assert len({m["Message-ID"] for m in received}) == 9
    subjects = Counter(str(m["Subject"]).strip().split(" ")[0] for m in received)
    assert subjects["Reminder:"] == 3, [str(m["Subject"]) for m in received]
    assert sum(1 for m in received if "expired" in str(m["Subject"])) == 3
    wait_until(lambda: len(events(pg, "notification.sent")) == 9, what="9 notification.sent")
