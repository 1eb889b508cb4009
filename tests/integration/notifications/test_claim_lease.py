"""Claims are short leases their living notifier renews: a slow notifier keeps its mails
however long its SMTP server takes, and a killed one's mails are sent by another within
seconds (the lease), each once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from consumers.mail import Mail
from consumers.notifier import Notifier
from tests.chaos.stack import SUBREQ
from tests.integration.helpers import wait_until
from tests.integration.notifications.smtp import SmtpServer
from tests.integration.notifications.support import delivery_counts, request_email, url_of
from tests.smtpd import LocalSmtpServer
from workflow.notifications.mailconfig import parse_mail_from
from workflow.persistence.database import Database

LEASE = timedelta(seconds=1)


class SlowMailer:
    """An SMTP server that takes ``seconds`` per mail (longer than the lease)."""

    def __init__(self, seconds: float, sent: list[str], lock: threading.Lock) -> None:
        self.seconds = seconds
        self.sent = sent
        self.lock = lock

    def send(self, message: Mail) -> None:
        time.sleep(self.seconds)
        with self.lock:
            self.sent.append(message.message_id.strip("<>").split("@", 1)[0])

    def close(self) -> None:
        pass


def notifier(db: Database, seconds: float, sent: list[str], stop: threading.Event) -> Notifier:
    lock = threading.Lock()
    return Notifier(
        "amqp://unused",
        db,
        lambda: SlowMailer(seconds, sent, lock),
        parse_mail_from("subreq <no-reply@subreq.invalid>"),
        stop=stop,
        connections=2,
        lease=LEASE,
        poll=0.05,
    )


def sending(db: Database) -> int:
    with db.engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM notification_deliveries WHERE status = 'sending'")
        )
        return int(found.scalar_one())


def test_a_slow_living_notifier_keeps_its_claims_past_their_lease(database: Database) -> None:
    """Each mail of the slow notifier takes 1.5 leases; another notifier polls all along and
    takes none of its claims (they are renewed), only the mails written later."""
    slow_sent: list[str] = []
    quick_sent: list[str] = []
    stop = threading.Event()
    slow = notifier(database, 1.5 * LEASE.total_seconds(), slow_sent, stop)
    quick = notifier(database, 0.0, quick_sent, stop)
    first = [f"slow-{n}" for n in range(8)]  # what two connections hold: 4 claims each
    for notification_id in first:
        request_email(database, notification_id, f"{notification_id}@acme.example")
    threads = [threading.Thread(target=slow.run)]
    threads[0].start()
    try:
        wait_until(lambda: sending(database) == len(first), what="the slow notifier's claims")
        threads.append(threading.Thread(target=quick.run))
        threads[1].start()
        assert quick.ready.wait(10)
        later = [f"later-{n}" for n in range(4)]
        for notification_id in later:
            request_email(database, notification_id, f"{notification_id}@acme.example")
        wait_until(
            lambda: delivery_counts(database).get("sent") == len(first) + len(later),
            timeout=30,
            what="every mail sent",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert sorted(slow_sent) == sorted(first)  # four rounds of 1.5 leases each: 6 leases
    assert sorted(quick_sent) == sorted(later)
    assert slow.renewals >= 5
    assert delivery_counts(database) == {"sent": len(first) + len(later)}


class Stalling:
    """An SMTP server that answers no mail's data until released (then ``451``): the
    mails in hand stay in hand."""

    def __init__(self) -> None:
        self.waiting = 0
        self.lock = threading.Lock()
        self.released = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.waiting += 1
        while not self.released.is_set():
            await asyncio.sleep(0.05)
        return "451 4.3.0 not taken"


@pytest.fixture
def stalling() -> Iterator[tuple[LocalSmtpServer, Stalling]]:
    handler = Stalling()
    server = LocalSmtpServer(handler)
    server.start()
    yield server, handler
    handler.released.set()  # the sessions end before the server does: nothing left open
    time.sleep(0.3)
    server.stop()


def _worker(db: Database, amqp_url: str, smtp_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SUBREQ_AMQP_URL": amqp_url,
        "SUBREQ_DATABASE_URL": url_of(db),
        "SUBREQ_SMTP_URL": smtp_url,
        "SUBREQ_SMTP_CONNECTIONS": "2",
        "SUBREQ_CLAIM_LEASE": "3s",
        "SUBREQ_LOG_LEVEL": "INFO",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(SUBREQ), "worker", "--no-consume"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@pytest.mark.postgres
@pytest.mark.slow
def test_a_killed_notifiers_claims_are_sent_by_another_within_seconds_each_once(
    mail_amqp_url: str,
    pg: Database,
    smtp: SmtpServer,
    stalling: tuple[LocalSmtpServer, Stalling],
    tmp_path: Path,
) -> None:
    server, handler = stalling
    ids = [str(uuid.uuid4()) for _ in range(20)]
    for notification_id in ids:
        request_email(pg, notification_id, f"{notification_id[:8]}@acme.example")
    log = tmp_path / "workers.log"
    stalled = _worker(pg, mail_amqp_url, server.url, log)
    processes = [stalled]
    try:
        # Two connections hold eight claims; their first mails wait for the server.
        wait_until(lambda: sending(pg) == 8 and handler.waiting == 2, what="claims in hand")
        processes.append(_worker(pg, mail_amqp_url, smtp.url, log))
        wait_until(lambda: delivery_counts(pg).get("sent") == 12, what="the other mails")
        time.sleep(4)  # longer than the lease: renewed, so the other notifier takes none
        assert delivery_counts(pg) == {"sent": 12, "sending": 8}
        os.killpg(stalled.pid, signal.SIGKILL)
        stalled.wait(10)
        killed = time.monotonic()
        wait_until(
            lambda: delivery_counts(pg).get("sent") == len(ids), timeout=30, what="every mail"
        )
        took = time.monotonic() - killed
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        print(log.read_text(errors="replace")[-4000:])
    received = Counter(str(m["X-Subreq-Notification-Id"]) for m in smtp.inbox.received())
    assert received == Counter(ids)  # each once: the stalled ones never got a 250
    with pg.engine.connect() as conn:
        attempts = Counter(
            conn.execute(text("SELECT attempts FROM notification_deliveries")).scalars()
        )
    assert attempts == {1: 12, 2: 8}  # the eight in hand were taken over
    # The lease (3 s) had been renewed at most a third of it before the kill.
    assert took < 10, f"the killed notifier's mails took {took:.1f} s to go out"
