"""The console's rules against the running installation: a mail scanner that opens every
link changes nothing (C1); refusals change nothing but the audit log (C2, C3, bad input);
two concurrent posts of one decision give one transition (C6); the C5 headers on every
response; the pages in Italian for an Italian member."""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Browser, Response, expect
from sqlalchemy import update

from tests.integration.console.conftest import Stack
from tests.integration.console.support import (
    audits,
    counts,
    csrf_in,
    history,
    link_in,
    links_in,
    mails,
    pending_id,
    people,
    signed_in,
    state_of,
    unused_links,
)
from tests.integration.helpers import SEATS, send
from workflow.persistence.tables import access_links

C5 = {
    "content-security-policy": "frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


def submitted(stack: Stack, account_id: str, emails: dict[str, str]) -> tuple[str, str]:
    """A pending request submitted over AMQP's path, and the owner's decision link."""
    reply = send(
        stack.service,
        "request.submit",
        {"account_id": account_id, "actor_id": f"{account_id}-admin", "changes": SEATS},
    )
    assert reply["ok"], reply
    mail = mails(stack.smtp, emails["owner"], subject="asks to change")[-1]
    return reply["result"]["request"]["request_id"], link_in(mail, "r")


def assert_c5(headers: Any) -> None:
    for name, part in C5.items():
        assert part in headers.get(name, ""), (name, dict(headers))
    assert "'unsafe-inline'" not in headers["content-security-policy"]
    assert "script-src 'self'" in headers["content-security-policy"]


def test_a_scanner_opening_every_link_changes_nothing(stack: Stack, chromium: Any) -> None:
    browser: Browser = chromium
    emails = people(stack.service, "scan")
    request_id, _ = submitted(stack, "scan", emails)
    with httpx.Client(base_url=stack.url, timeout=10) as client:
        page = client.get("/signin")
        form = {"csrf": csrf_in(page.text, "/signin"), "email": emails["admin"]}
        assert client.post("/signin", data=form).status_code == 200
    mails(stack.smtp, emails["admin"], subject="Sign in")
    everything = [
        url
        for address in emails.values()
        for mail in stack.smtp.inbox.to(address)
        for url in links_in(mail)
    ]
    assert any("/r/" in u for u in everything)
    assert any("/signin/" in u for u in everything)
    before, unused = counts(stack.db), unused_links(stack.db)

    scanner = browser.new_context()  # runs the pages' scripts, as some scanners do
    tab = scanner.new_page()
    for url in everything:
        assert httpx.get(url, follow_redirects=True, timeout=10).status_code < 500
        assert httpx.head(url, timeout=10).status_code < 500
        tab.goto(url)
        tab.wait_for_load_state("networkidle")
    scanner.close()

    assert counts(stack.db) == before
    assert unused_links(stack.db) == unused
    assert state_of(stack.db, request_id) == "pending"
    # The links still work for the people after the scanner: the admin signs in with hers.
    sign_in = next(u for u in everything if "/signin/" in u).removeprefix(stack.url)
    with httpx.Client(base_url=stack.url, timeout=10) as person:
        confirm = person.get(sign_in)
        done = person.post(sign_in, data={"csrf": csrf_in(confirm.text, sign_in)})
        assert done.status_code == 303
        assert person.get("/subscription").status_code == 200


def test_refusals_change_nothing_but_the_audit_log(stack: Stack) -> None:
    emails = people(stack.service, "guard")
    other = people(stack.service, "other")
    request_id, link = submitted(stack, "guard", emails)
    _, other_link = submitted(stack, "other", other)
    owner = signed_in(stack.url, stack.smtp, emails["owner"])
    stranger = signed_in(stack.url, stack.smtp, other["owner"])
    admin = signed_in(stack.url, stack.smtp, emails["admin"])
    page = f"/requests/{request_id}"
    mine = csrf_in(owner.get(page).text, f"{page}/decide")

    def refused(response: httpx.Response, status: int, says: str, code: str, **where: str) -> None:
        assert response.status_code == status, response.text
        assert says in response.text
        assert "Traceback" not in response.text
        assert_c5(response.headers)
        rows = audits(stack.db, **where)
        assert rows, where
        assert rows[-1]["code"] == code

    def unchanged(action: Any) -> Any:
        before = counts(stack.db)
        result = action()
        after = counts(stack.db)
        assert {k: v for k, v in after.items() if k != "audit_log"} == {
            k: v for k, v in before.items() if k != "audit_log"
        }
        assert after["audit_log"] == before["audit_log"] + 1
        return result

    decide = f"{page}/decide"
    # A POST without its CSRF token, and one with another session's.
    r = unchanged(lambda: owner.post(decide, data={"decision": "approve"}))
    refused(r, 403, "security token", "forbidden", actor_id="guard-owner", channel="web")
    r = unchanged(lambda: admin.post(f"{page}/cancel", data={"csrf": mine}))
    refused(r, 403, "security token", "forbidden", actor_id="guard-admin")
    # Another account's request id: 404 to look at, 404 to act on.
    assert stranger.get(page).status_code == 404
    theirs = csrf_in(stranger.get(f"/requests/{pending_id(stack.db, 'other')}").text, "/signout")
    r = unchanged(lambda: stranger.post(decide, data={"csrf": theirs, "decision": "approve"}))
    assert r.status_code == 403  # a sign-out token is no decision token
    page_other = stranger.get(f"/requests/{pending_id(stack.db, 'other')}").text
    token = csrf_in(page_other, f"/requests/{pending_id(stack.db, 'other')}/decide")
    r = unchanged(lambda: stranger.post(decide, data={"csrf": token, "decision": "approve"}))
    refused(r, 404, "not yours", "not_found", actor_id="other-owner", request_id=request_id)
    # Forged fields: actor, account, role are never taken from a form.
    forger = people(stack.service, "forge")
    admin.close()
    admin = signed_in(stack.url, stack.smtp, forger["admin"])
    form = admin.get("/subscription").text
    change = csrf_in(form, "/subscription")
    for field in ("actor_id", "account_id", "role"):
        r = unchanged(
            lambda f=field: admin.post(  # type: ignore[misc]
                "/subscription",
                data={"csrf": change, "action": "submit", "seats.support": "1", f: "guard-owner"},
            )
        )
        refused(r, 400, field, "invalid_message", actor_id="forge-admin")
    r = unchanged(
        lambda: admin.post(
            "/subscription", data={"csrf": change, "action": "submit", "seats.nosuch": "1"}
        )
    )
    refused(r, 400, "seats.nosuch", "invalid_message", actor_id="forge-admin")
    # An oversize body, declared or streamed.
    r = unchanged(lambda: admin.post("/subscription", data={"csrf": change, "note": "x" * 20_000}))
    refused(r, 413, "too much data", "invalid_message", actor_id="forge-admin")

    def stream() -> Any:
        yield b"csrf=" + change.encode() + b"&note="
        for _ in range(40):
            yield b"y" * 1000

    r = unchanged(
        lambda: admin.post(
            "/subscription",
            content=stream(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    )
    refused(r, 413, "too much data", "invalid_message", actor_id="forge-admin")
    # Malformed and unknown tokens: 404.
    for token_path in ("/r/abc", "/r/" + "A" * 43, "/r/" + secrets.token_urlsafe(32)):
        r = unchanged(lambda p=token_path: httpx.get(stack.url + p))  # type: ignore[misc]
        refused(r, 404, "nothing here", "not_found", channel="email_link")
    # The form of one link posted to another request's link.
    path, other_path = link.removeprefix(stack.url), other_link.removeprefix(stack.url)
    link_form = csrf_in(httpx.get(link).text, f"{path}/decide")
    r = unchanged(
        lambda: httpx.post(f"{other_link}/decide", data={"csrf": link_form, "decision": "approve"})
    )
    refused(r, 403, "security token", "forbidden", actor_id="other-owner", channel="email_link")
    assert state_of(stack.db, request_id) == "pending"
    assert state_of(stack.db, pending_id(stack.db, "other")) == "pending"
    for client in (owner, stranger, admin):
        client.close()
    assert other_path != path


def test_expired_and_used_links_show_the_state_and_do_nothing(stack: Stack) -> None:
    emails = people(stack.service, "late")
    request_id, link = submitted(stack, "late", emails)
    path = link.removeprefix(stack.url)
    form = csrf_in(httpx.get(link).text, f"{path}/decide")
    with stack.db.engine.begin() as conn:
        conn.execute(
            update(access_links)
            .where(access_links.c.request_id == request_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    expired = httpx.get(link)
    assert expired.status_code == 200
    assert "expired" in expired.text
    assert 'value="approve"' not in expired.text
    before = counts(stack.db)
    r = httpx.post(f"{link}/decide", data={"csrf": form, "decision": "approve"})
    assert r.status_code == 303
    assert counts(stack.db) == before
    assert state_of(stack.db, request_id) == "pending"

    # A reminder-like fresh link decides; then that link is used up and shows the outcome.
    owner = signed_in(stack.url, stack.smtp, emails["owner"])
    page = f"/requests/{request_id}"
    done = owner.post(
        f"{page}/decide",
        data={
            "csrf": csrf_in(owner.get(page).text, f"{page}/decide"),
            "decision": "reject",
            "comment": "Not this quarter",
        },
    )
    assert done.status_code == 303
    assert history(stack.db, request_id)[-1] == ("rejected", "late-owner", "web")
    before = counts(stack.db)
    again = httpx.post(f"{link}/decide", data={"csrf": form, "decision": "approve"})
    assert again.status_code == 303
    assert counts(stack.db) == before
    shown = httpx.get(link)
    assert "Rejected by Olivia Owner at" in shown.text
    owner.close()


def test_two_concurrent_posts_of_one_decision_make_one_transition(stack: Stack) -> None:
    emails = people(stack.service, "twice")
    request_id, link = submitted(stack, "twice", emails)
    path = link.removeprefix(stack.url)
    form = csrf_in(httpx.get(link).text, f"{path}/decide")
    start = threading.Barrier(4)
    answers: list[int] = []

    def post() -> None:
        with httpx.Client(timeout=20) as client:
            start.wait()
            answers.append(
                client.post(
                    f"{link}/decide", data={"csrf": form, "decision": "approve"}
                ).status_code
            )

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == [303] * 4
    assert history(stack.db, request_id) == [
        ("pending", "twice-admin", "amqp"),
        ("approved", "twice-owner", "email_link"),
    ]
    events = mails(stack.smtp, emails["admin"], subject="approved")
    assert len(events) == 1


def test_every_response_carries_the_c5_headers(stack: Stack, chromium: Any) -> None:
    browser: Browser = chromium
    emails = people(stack.service, "heads")
    request_id, link = submitted(stack, "heads", emails)
    seen: list[Response] = []
    context = browser.new_context()
    page = context.new_page()
    page.on("response", lambda response: seen.append(response))
    admin = signed_in(stack.url, stack.smtp, emails["admin"])
    context.add_cookies(
        [{"name": c.name, "value": c.value or "", "url": stack.url} for c in admin.cookies.jar]
    )
    for path in (
        "/signin",
        "/subscription",
        "/requests",
        f"/requests/{request_id}",
        "/requests?state=pending",
        "/no/such/page",
        "/static/console.css",
    ):
        page.goto(stack.url + path)
    page.goto(link)
    assert len(seen) >= 9
    assert {r.url.split("?")[0].removeprefix(stack.url) for r in seen} >= {"/static/console.js"}
    for response in seen:
        assert_c5(response.headers)
    for status, response in (
        (405, httpx.put(f"{stack.url}/signin")),
        (404, httpx.get(f"{stack.url}/r/x")),
        (403, httpx.post(f"{stack.url}/signin", data={"email": "a@b.c"})),
    ):
        assert response.status_code == status
        assert_c5(response.headers)
    admin.close()
    context.close()


def test_an_italian_member_gets_the_pages_in_italian(
    stack: Stack, chromium: Any, screenshots: Path
) -> None:
    browser: Browser = chromium
    emails = people(stack.service, "roma", locale="it", currency="EUR")
    admin = signed_in(stack.url, stack.smtp, emails["admin"])
    context = browser.new_context(viewport={"width": 1200, "height": 860})
    context.add_cookies(
        [{"name": c.name, "value": c.value or "", "url": stack.url} for c in admin.cookies.jar]
    )
    page = context.new_page()
    page.goto(f"{stack.url}/subscription")
    expect(page.locator("nav")).to_contain_text("Richieste")
    expect(page.get_by_role("button", name="Invia la richiesta")).to_be_visible()
    page.fill("#seats-support", "2")
    expect(page.locator("#summary")).to_contain_text("218,00 EUR")
    expect(page.locator("#summary")).to_contain_text("al mese")
    page.screenshot(path=str(screenshots / "change-form-it.png"), full_page=True)
    page.get_by_role("button", name="Invia la richiesta").click()
    expect(page.locator(".notice")).to_contain_text("inviata")
    mail = mails(stack.smtp, emails["owner"], subject="chiede")[-1]
    owner = context.browser.new_context(viewport={"width": 1200, "height": 860})  # type: ignore[union-attr]
    decide = owner.new_page()
    decide.goto(link_in(mail, "r"))
    expect(decide.get_by_role("button", name="Approva")).to_be_visible()
    expect(decide.locator("table.history")).to_contain_text("In attesa")
    decide.get_by_role("button", name="Approva").click()
    expect(decide.locator(".outcome")).to_contain_text("Approvata da Olivia Owner alle")
    decide.screenshot(path=str(screenshots / "decision-link-it.png"), full_page=True)
    owner.close()
    context.close()
    admin.close()


def test_without_javascript_the_form_posts_a_preview_then_submits(
    stack: Stack, chromium: Any
) -> None:
    browser: Browser = chromium
    emails = people(stack.service, "plain")
    admin = signed_in(stack.url, stack.smtp, emails["admin"])
    context = browser.new_context(java_script_enabled=False)
    context.add_cookies(
        [{"name": c.name, "value": c.value or "", "url": stack.url} for c in admin.cookies.jar]
    )
    page = context.new_page()
    page.goto(f"{stack.url}/subscription")
    before = counts(stack.db)
    page.fill("#seats-support", "5")
    expect(page.locator("#summary")).to_contain_text("Choose a change")  # nothing live
    page.get_by_role("button", name="Update summary").click()
    expect(page.locator("#summary")).to_contain_text("575.00 USD")
    expect(page.locator("#seats-support")).to_have_value("5")  # the form comes back as sent
    assert counts(stack.db) == before  # a preview records nothing
    page.get_by_role("button", name="Submit request").click()
    expect(page.locator(".notice")).to_contain_text("submitted")
    assert history(stack.db, pending_id(stack.db, "plain")) == [("pending", "plain-admin", "web")]
    context.close()
    admin.close()
