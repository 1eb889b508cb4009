"""Links in emails (console.md C3, C4) on SQLite and PostgreSQL: a decider about a pending
request gets a decision link of their own, stored only as a hash; everyone else the
request's page; a final request no decision link; sign-in links for current members only;
the ``notification.requested`` events never carry a token."""

from __future__ import annotations

import re
from datetime import timedelta

import orjson
from sqlalchemy import select

from tests.conftest import Clock
from tests.integration.helpers import seed, send, submit
from workflow.app.service import CommandService
from workflow.console.reads import Reads
from workflow.console.signin import request_sign_in
from workflow.console.tokens import token_hash
from workflow.notifications.deliveries import Notice, notice_of
from workflow.notifications.links import Links
from workflow.notifications.texts import Email
from workflow.ops.retention import KEEP_LINKS, prune
from workflow.persistence.tables import access_links, outbox

URL = "https://console.example"
TOKEN = re.compile(r"/(?:r|signin)/([A-Za-z0-9_-]{43})")


def notices(service: CommandService, template: str) -> list[Notice]:
    with service.db.store(lock=False) as store:  # the records with their events
        found = [notice_of(row) for row in store.deliveries.recent(None, 1000)]
    return [n for n in found if n.template == template]


def mail() -> Email:
    return Email("S", "Hello\n\n-- \nsubreq", "<html><body><!-- subreq:links --></body></html>")


def test_a_decider_gets_a_decision_link_of_their_own(service: CommandService, clock: Clock) -> None:
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    links = Links(service.db, URL, timedelta(hours=72), clock=clock)
    (owner,) = notices(service, "request_submitted")
    first = links.decorate(owner, mail())
    second = links.decorate(owner, mail())
    tokens = [TOKEN.search(m.text).group(1) for m in (first, second)]  # type: ignore[union-attr]
    assert first.text.count(f"{URL}/r/") == 1
    assert tokens[0] != tokens[1]  # a reminder carries a fresh link
    reads = Reads(service.db)
    link = reads.link(tokens[0])
    assert link is not None
    assert (link.kind, link.account_id, link.user_id, link.request_id) == (
        "decision",
        "acme",
        "acme-owner",
        request_id,
    )
    assert link.expires_at == clock.now + timedelta(hours=72)
    with service.db.engine.connect() as conn:
        stored = [r[0] for r in conn.execute(select(access_links.c.token_hash))]
        payloads = " ".join(r[0] for r in conn.execute(select(outbox.c.payload)))
    assert sorted(stored) == sorted(token_hash(t) for t in tokens)
    assert not any(t in payloads for t in tokens)  # C3: never in an event
    assert f"{URL}/r/" not in payloads
    assert reads.link("A" * 43) is None
    assert reads.link("../etc") is None


def test_others_get_the_request_page_and_a_final_request_no_decision_link(
    service: CommandService, clock: Clock
) -> None:
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    links = Links(service.db, URL, timedelta(hours=72), clock=clock)
    (owner,) = notices(service, "request_submitted")
    agent = Notice(**{**owner.__dict__, "recipient_id": "acme-agent"})
    assert links.link_for(agent).kind == "review"  # type: ignore[union-attr]
    reply = send(
        service,
        "request.decide",
        {"request_id": request_id, "actor_id": "acme-owner", "decision": "approve"},
    )
    assert reply["ok"]
    late = links.link_for(owner)
    assert late is not None
    assert late.kind == "review"
    assert late.url == f"{URL}/requests/{request_id}"
    (told,) = notices(service, "request_approved")
    decorated = links.decorate(told, mail())
    assert f"View the request: {URL}/requests/{request_id}" in decorated.text


def test_sign_in_links_only_for_current_members(service: CommandService, clock: Clock) -> None:
    seed(service)
    assert request_sign_in(service.db, "nobody@nowhere.example", clock.now) == 0
    assert request_sign_in(service.db, "ACME-ADMIN@acme.example", clock.now) == 1
    (notice,) = notices(service, "sign_in")
    assert notice.recipient_id == "acme-admin"
    assert "http" not in notice.text  # the event's text carries no link (C3)
    links = Links(service.db, URL, timedelta(hours=72), clock=clock)
    link = links.link_for(notice)
    assert link is not None
    assert link.kind == "sign_in"
    assert link.until == clock.now + timedelta(minutes=30)
    token = link.url.rsplit("/", 1)[1]
    reads = Reads(service.db)
    found = reads.link(token)
    assert found is not None
    assert found.usable(clock.now)
    assert reads.use_link(found.token_hash, clock.now)
    assert not reads.use_link(found.token_hash, clock.now)  # single use
    assert send(service, "member.remove", {"account_id": "acme", "user_id": "acme-admin"})["ok"]
    assert links.link_for(notice) is None


def test_every_event_of_a_sign_in_is_valid_json(service: CommandService, clock: Clock) -> None:
    seed(service)
    request_sign_in(service.db, "acme-owner@acme.example", clock.now)
    with service.db.engine.connect() as conn:
        rows = [orjson.loads(r[0]) for r in conn.execute(select(outbox.c.payload))]
    sign_ins = [r for r in rows if r["data"].get("template") == "sign_in"]
    assert len(sign_ins) == 1
    assert sign_ins[0]["account_id"] == "acme"
    assert "request_id" not in sign_ins[0]


def test_a_pruned_link_is_unknown(service: CommandService, clock: Clock) -> None:
    seed(service)
    submit(service)
    (owner,) = notices(service, "request_submitted")
    link = Links(service.db, URL, timedelta(hours=72), clock=clock).link_for(owner)
    assert link is not None
    token = link.url.rsplit("/", 1)[1]
    reads = Reads(service.db)
    prune(service.db, clock.now + timedelta(days=10))
    assert reads.link(token) is not None  # expired, but kept to show the outcome
    prune(service.db, clock.now + timedelta(hours=72) + KEEP_LINKS + timedelta(seconds=1))
    assert reads.link(token) is None
