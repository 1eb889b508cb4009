"""Expiry, reminders, expiry warnings and escalation with second-scale durations across two
``subreq worker`` processes (R14, R20-R22), their mails delivered through a real SMTP server
exactly once (R18)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from consumers.notifier import STARTED
from tests.integration.helpers import events, member, seed, send, submit, wait_until
from tests.integration.notifications.smtp import SmtpServer
from tests.integration.notifications.support import Queues, url_of
from workflow.app.service import CommandService
from workflow.domain.catalog import Catalog
from workflow.persistence.database import Database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SUBREQ = Path(sys.executable).with_name("subreq")


Workers = Callable[[dict[str, str]], list[subprocess.Popen[bytes]]]
"""Starts two ``subreq worker --no-consume`` processes with these timer settings and
waits until both notifiers (hence both sweepers) run."""


@pytest.fixture
def start_workers(
    mail_amqp_url: str, pg: Database, smtp: SmtpServer, tmp_path: Path
) -> Iterator[Workers]:
    started: list[subprocess.Popen[bytes]] = []
    logs = []
    paths = [tmp_path / f"worker-{name}.log" for name in ("a", "b")]

    def start(timers: dict[str, str]) -> list[subprocess.Popen[bytes]]:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SUBREQ_")},
            "SUBREQ_AMQP_URL": mail_amqp_url,
            "SUBREQ_DATABASE_URL": url_of(pg),
            "SUBREQ_SMTP_URL": smtp.url,
            **timers,
        }
        for path in paths:
            log = path.open("wb")
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
        wait_until(
            lambda: all(STARTED in path.read_text(errors="replace") for path in paths),
            timeout=30,
            what="both workers to start",
        )
        return started

    yield start
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
    for path in paths:
        if path.exists():
            print(f"--- {path.name} ---")
            print(path.read_text(errors="replace")[-3000:])


def test_two_workers_remind_once_and_expire_once(
    pg: Database, catalog: Catalog, smtp: SmtpServer, queues: Queues, start_workers: Workers
) -> None:
    service = CommandService(pg, catalog)
    accounts = [f"acct{n}" for n in range(3)]
    for account_id in accounts:
        seed(service, account_id)
    workers = start_workers(
        {"SUBREQ_REQUEST_TTL": "5s", "SUBREQ_REMINDER_AFTER": "1s", "SUBREQ_EXPIRY_WARNING": "0"}
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


def test_two_workers_send_each_repeat_warning_and_escalation_once(
    pg: Database, catalog: Catalog, smtp: SmtpServer, queues: Queues, start_workers: Workers
) -> None:
    """R20-R22 with second-scale timers: reminders after 1 s and then every 3 s, three in
    all; the escalation after 2 s (due before the second reminder, so the reminders after
    it reach the escalated deciders too); the warning 4 s before the expiry at 12 s. Both
    workers sweep every quarter of a second: each email goes once to each recipient, in
    their locale. A stalled sweep may fire the escalation and the second reminder in one
    pass (reminders first): the escalated deciders' reminders are those sent after their
    escalation, read from the order the notifications were written in."""
    service = CommandService(pg, catalog)
    accounts = [f"acct{n}" for n in range(3)]
    for account_id in accounts:
        seed(service, account_id)
        extra = member(f"{account_id}-billing-2", "billing_admin", account_id, locale="it")
        assert send(service, "member.upsert", extra)["ok"]
    workers = start_workers(
        {
            "SUBREQ_REQUEST_TTL": "12s",
            "SUBREQ_REMINDER_AFTER": "1s",
            "SUBREQ_REMINDER_EVERY": "3s",
            "SUBREQ_REMINDERS_MAX": "3",
            "SUBREQ_EXPIRY_WARNING": "4s",
            "SUBREQ_ESCALATE_AFTER": "2s",
        }
    )
    for account_id in accounts:
        assert submit(service, account_id)["ok"]

    expected: Counter[tuple[str, str, str]] = Counter()
    for a in accounts:
        expected[("request_submitted", f"{a}-owner", "en")] = 1
        expected[("request_reminder", f"{a}-owner", "en")] = 3
        for billing, locale in ((f"{a}-billing", "en"), (f"{a}-billing-2", "it")):
            expected[("request_escalated", billing, locale)] = 1
            expected[("request_expiry_warning", billing, locale)] = 1
        expected[("request_expiry_warning", f"{a}-owner", "en")] = 1
        expected[("request_expiry_warning", f"{a}-admin", "en")] = 1
        expected[("request_expired", f"{a}-admin", "en")] = 1

    wait_until(lambda: len(events(pg, "request.expired")) == 3, timeout=40, what="3 expiries")
    wait_until(
        lambda: len(smtp.inbox.received()) >= len(events(pg, "notification.requested")),
        timeout=30,
        what="a mail for every notification",
    )
    time.sleep(1.0)  # several more sweeps by both workers: nothing more may happen
    assert all(process.poll() is None for process in workers), "a worker died"

    requested = [n["data"] for n in events(pg, "notification.requested")]
    for a in accounts:
        billing = [
            i for i, d in enumerate(requested) if d["recipient"]["user_id"] == f"{a}-billing"
        ]
        escalated = next(i for i in billing if requested[i]["template"] == "request_escalated")
        after = sum(
            1
            for d in requested[escalated:]
            if d["template"] == "request_reminder" and d["recipient"]["user_id"] == f"{a}-owner"
        )
        assert after >= 1  # the third reminder is due 5 s after the escalation
        for name, locale in ((f"{a}-billing", "en"), (f"{a}-billing-2", "it")):
            expected[("request_reminder", name, locale)] = after
    total = sum(expected.values())
    told = Counter((d["template"], d["recipient"]["user_id"], d["locale"]) for d in requested)
    assert told == expected

    received = smtp.inbox.received()
    assert len(received) == total
    assert len({m["Message-ID"] for m in received}) == total
    by_notification = {d["notification_id"]: d for d in requested}
    assert len(by_notification) == total
    subjects = Counter(
        (str(m["To"]).split("<")[-1].rstrip(">"), str(m["Subject"]).split(":")[0]) for m in received
    )
    for a in accounts:
        assert subjects[(f"{a}-billing-2@{a}.example", "Ora anche a te")] == 1
        assert subjects[(f"{a}-billing@{a}.example", "Now with you too")] == 1
        assert (
            subjects[(f"{a}-billing-2@{a}.example", "Promemoria")]
            == expected[("request_reminder", f"{a}-billing-2", "it")]
        )
        assert subjects[(f"{a}-owner@{a}.example", "Reminder")] == 3
    warnings = [m for m in received if "expires on" in str(m["Subject"])]
    assert len(warnings) == 3 * 3  # requester, owner, billing admin (billing-2 in Italian)
    for mail in warnings + [m for m in received if "scade il" in str(m["Subject"])]:
        assert mail.get_content_type() == "multipart/alternative"
        plain, html = (part.get_content_type() for part in mail.iter_parts())
        assert (plain, html) == ("text/plain", "text/html")
    wait_until(
        lambda: len(events(pg, "notification.sent")) == total, what=f"{total} notification.sent"
    )
