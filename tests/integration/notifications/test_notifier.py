"""The email notifier end to end: RabbitMQ, PostgreSQL and a real SMTP server (aiosmtpd).

Exactly one mail per notification (R18) however many notifiers share the database; SMTP
down then up loses and doubles nothing; bad input of every kind ends with a recorded
reason (and a dead letter) and never stops the others."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pika
import pytest
from typer.testing import CliRunner

from consumers.cli import app
from tests.integration.amqp.support import unpublished
from tests.integration.helpers import decide, events, member, seed, send, submit, wait_until
from tests.integration.notifications.smtp import SmtpServer
from tests.integration.notifications.support import (
    Queues,
    delivery_counts,
    request_email,
    running,
    url_of,
)
from workflow.app.service import CommandService
from workflow.contract.names import RETIRED_NOTIFICATIONS_QUEUE
from workflow.domain.catalog import Catalog
from workflow.notifications.deliveries import recent
from workflow.persistence.database import Database

pytestmark = [pytest.mark.postgres]


def notification_ids(db: Database) -> list[str]:
    return [e["data"]["notification_id"] for e in events(db, "notification.requested")]


def sent_ids(db: Database) -> list[str]:
    return [e["data"]["notification_id"] for e in events(db, "notification.sent")]


def test_submit_and_decision_reach_the_mailboxes_as_multipart_mail(
    mail_amqp_url: str,
    pg: Database,
    catalog: Catalog,
    smtp: SmtpServer,
    queues: Queues,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    service = CommandService(pg, catalog)
    seed(service)
    send(service, "member.upsert", member("acme-owner", "owner", locale="it-IT"))
    request_id = submit(service, note="for the new team")["result"]["request"]["request_id"]
    assert decide(service, request_id, "owner", comment="go ahead")["ok"]
    with running(mail_amqp_url, pg, smtp.url):
        wait_until(lambda: len(smtp.inbox.received()) == 2, what="two mails")
        wait_until(lambda: len(sent_ids(pg)) == 2, what="notification.sent for both")
    [to_owner] = smtp.inbox.to("acme-owner@acme.example")
    [to_admin] = smtp.inbox.to("acme-admin@acme.example")
    submitted, approved = events(pg, "notification.requested")
    assert str(to_owner["From"]) == "subreq <no-reply@subreq.invalid>"
    assert str(to_owner["To"]) == "Acme Owner <acme-owner@acme.example>"
    assert str(to_owner["Subject"]) == submitted["data"]["subject"]
    assert "chiede di modificare" in str(to_owner["Subject"])  # R17: the owner's locale
    assert to_owner["Message-ID"] == f"<{submitted['data']['notification_id']}@subreq.invalid>"
    assert to_owner["Date"] is not None
    assert to_owner["Auto-Submitted"] == "auto-generated"
    assert to_owner.get_content_type() == "multipart/alternative"
    text = to_owner.get_body(("plain",))
    html = to_owner.get_body(("html",))
    assert text is not None
    assert html is not None
    assert text.get_content().replace("\r\n", "\n").strip() == submitted["data"]["text"]
    assert "Acme Admin" in html.get_content()
    assert "575,00 USD" in html.get_content()
    assert "for the new team" in html.get_content()
    assert str(to_admin["Subject"]) == approved["data"]["subject"]
    assert "was approved" in str(to_admin["Subject"])
    admin_text = to_admin.get_body(("plain",))
    assert admin_text is not None
    assert "go ahead" in admin_text.get_content()
    assert sorted(sent_ids(pg)) == sorted(notification_ids(pg))
    assert approved["data"]["template"] == "request_approved"

    # Who was told what, as operators see it.
    monkeypatch.setenv("SUBREQ_DATABASE_URL", url_of(pg))
    shown = CliRunner().invoke(app, ["requests", "show", request_id])
    assert shown.exit_code == 0, shown.output
    assert "Acme Owner <acme-owner@acme.example>  request_submitted  it" in shown.output
    assert shown.output.count(" sent 20") == 2
    listed = CliRunner().invoke(app, ["notifications", "list", "--status", "sent"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("request_") == 2


def test_notifiers_sharing_the_database_send_each_mail_once(
    mail_amqp_url: str, pg: Database, smtp: SmtpServer, queues: Queues
) -> None:
    """Two workers, four connections each, claiming from the same records: every mail once,
    and nothing for the notifier in any queue (the events still go to subreq.events)."""
    ids = [str(uuid.uuid4()) for _ in range(120)]
    with running(mail_amqp_url, pg, smtp.url), running(mail_amqp_url, pg, smtp.url, relay=False):
        for notification_id in ids:
            request_email(pg, notification_id, f"{notification_id[:8]}@acme.example")
        wait_until(lambda: delivery_counts(pg).get("sent") == len(ids), what="every mail sent")
        wait_until(lambda: len(sent_ids(pg)) == len(ids), what="notification.sent for each")
        wait_until(lambda: unpublished(pg) == 0, what="the relay")
    message_ids = [m["Message-ID"] for m in smtp.inbox.received()]
    assert sorted(message_ids) == sorted(f"<{i}@subreq.invalid>" for i in ids)
    assert sorted(sent_ids(pg)) == sorted(ids)
    assert queues.dead_letters() == []
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
        queues.channel.queue_declare(RETIRED_NOTIFICATIONS_QUEUE, passive=True)


def test_smtp_down_then_up_loses_and_doubles_nothing(
    mail_amqp_url: str, pg: Database, catalog: Catalog, smtp: SmtpServer, queues: Queues
) -> None:
    service = CommandService(pg, catalog)
    for n in range(5):
        seed(service, f"acct{n}")
    smtp.stop()
    with running(mail_amqp_url, pg, smtp.url):
        for n in range(5):
            assert submit(service, f"acct{n}")["ok"]
        wait_until(
            lambda: (
                delivery_counts(pg).get("retrying", 0) + delivery_counts(pg).get("sending", 0) == 5
            ),
            what="every notification to have failed once",
        )
        smtp.start()
        wait_until(lambda: delivery_counts(pg) == {"sent": 5}, timeout=20, what="all five sent")
    received = sorted(m["Message-ID"] for m in smtp.inbox.received())
    assert received == sorted(f"<{i}@subreq.invalid>" for i in notification_ids(pg))
    assert len(sent_ids(pg)) == 5
    assert queues.dead_letters() == []


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
def test_bad_input_ends_with_a_reason_and_never_blocks_the_others(
    mail_amqp_url: str,
    pg: Database,
    catalog: Catalog,
    smtp: SmtpServer,
    queues: Queues,
    pipelining: bool,
) -> None:
    """With and without PIPELINING: refusals in either way of sending are sorted alike."""
    smtp.inbox.pipelining = pipelining
    smtp.inbox.refuse["nobody@acme.example"] = "550 5.1.1 no such mailbox"
    smtp.inbox.busy["slow@acme.example"] = 2  # 451 twice, then accepted
    with running(mail_amqp_url, pg, smtp.url):
        request_email(pg, "undeliverable", "weird<addr>@acme.example")
        request_email(pg, "rejected", "nobody@acme.example")
        request_email(pg, "slow", "slow@acme.example")
        request_email(pg, "bad-template", "o@acme.example", context={"lines": []})
        request_email(pg, "injected", "eve@acme.example", name="Eve\r\nBcc: victim@evil.example")
        request_email(pg, "fine", "fine@acme.example")
        wait_until(lambda: delivery_counts(pg) == {"sent": 3, "failed": 3}, what="every outcome")
        dead: list[tuple[bytes, dict[str, Any]]] = []

        def three_letters() -> bool:
            dead.extend(queues.dead_letters())
            return len(dead) >= 3

        wait_until(three_letters, what="three dead letters")
    reasons = sorted(str(headers["x-subreq-error"]) for _, headers in dead)
    assert len(reasons) == 3, reasons
    assert {orjson.loads(body)["data"]["notification_id"] for body, _ in dead} == {
        "undeliverable",
        "rejected",
        "bad-template",
    }
    assert any("undeliverable address" in r for r in reasons)
    assert any("550 5.1.1 no such mailbox" in r for r in reasons)
    assert any("template 'request_submitted'" in r and "undefined" in r for r in reasons)

    with pg.store(lock=False) as store:
        records = {r["notification_id"]: r for r in recent(store)}
    assert records["slow"]["status"] == "sent"
    assert records["slow"]["attempts"] == 3
    assert records["rejected"]["last_error"].startswith("recipient refused: 550")
    assert records["undeliverable"]["status"] == "failed"
    assert "undefined" in records["bad-template"]["last_error"]

    # The injection attempt is one recipient, with no header added.
    [injected] = smtp.inbox.to("eve@acme.example")
    assert injected["Bcc"] is None
    assert str(injected["To"]) == '"Eve Bcc: victim@evil.example" <eve@acme.example>'
    assert all(
        rcpts in (["eve@acme.example"], ["fine@acme.example"], ["slow@acme.example"])
        for _, rcpts in smtp.inbox.envelopes
    )
    assert len(smtp.inbox.to("slow@acme.example")) == 1
