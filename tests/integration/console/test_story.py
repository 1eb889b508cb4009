"""The issue's story in a real browser, against the real worker, broker, database and an
SMTP sink: an admin signs in with the link from their email, composes a change whose
summary follows the form, submits; the owner opens the link in their email, rejects
without a reason (refused, R19), then approves; the requester sees it approved; the link
opened again shows the outcome. The pages are photographed for the README."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.integration.console.conftest import Stack
from tests.integration.console.support import (
    audits,
    history,
    link_in,
    mails,
    pending_id,
    people,
    state_of,
)

VIEWPORT = {"width": 1200, "height": 860}


def sign_in(stack: Stack, browser: Browser, email: str) -> Page:
    """A new browser context signed in as ``email`` through the sign-in page and its mail."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(f"{stack.url}/signin")
    page.fill("#email", email)
    before = len(stack.smtp.inbox.to(email))
    page.get_by_role("button").click()
    expect(page.locator("h1")).to_have_text("Check your email")
    mail = mails(stack.smtp, email, before + 1)[-1]
    page.goto(link_in(mail, "signin"))
    page.get_by_role("button", name="Sign in").or_(
        page.get_by_role("button", name="Accedi")
    ).click()
    page.wait_for_url(f"{stack.url}/subscription")
    return page


def test_the_story_from_change_form_to_approval(
    stack: Stack, chromium: Any, screenshots: Path
) -> None:
    browser: Browser = chromium
    emails = people(stack.service, "acme")

    # The sign-in page, then the admin's link from their email.
    page = browser.new_context(viewport=VIEWPORT).new_page()  # type: ignore[arg-type]
    page.goto(f"{stack.url}/signin")
    page.screenshot(path=str(screenshots / "sign-in.png"))
    page.context.close()
    admin = sign_in(stack, browser, emails["admin"])
    cookie = admin.context.cookies()[0]
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Lax"

    # The change form: the summary follows the form without a page load.
    summary = admin.locator("#summary")
    expect(summary).to_contain_text("Choose a change")
    expect(admin.get_by_role("button", name="Update summary")).to_be_hidden()  # live instead
    admin.fill("#seats-support", "5")
    expect(summary).to_contain_text("575.00 USD")
    expect(summary).to_contain_text("575.00")
    admin.check("input[name='add.guide']")
    admin.select_option("#addplan-guide", "professional")
    expect(summary).to_contain_text("Guide")
    total = summary.locator(".total")
    expect(total).not_to_have_text("575.00 USD")
    admin.fill("#note", "Five agents join on Monday")
    admin.screenshot(path=str(screenshots / "change-form.png"), full_page=True)
    admin.get_by_role("button", name="Submit request").click()
    expect(admin.locator(".notice")).to_contain_text("submitted")
    request_id = pending_id(stack.db, "acme")
    assert admin.url.startswith(f"{stack.url}/requests/{request_id}")
    assert history(stack.db, request_id) == [("pending", "acme-admin", "web")]

    # The owner's email has a decision link; the page it opens needs no sign-in.
    submitted = mails(stack.smtp, emails["owner"], subject="asks to change")[0]
    link = link_in(submitted, "r")
    owner = browser.new_context(viewport=VIEWPORT).new_page()  # type: ignore[arg-type]
    owner.goto(link)
    lines = owner.locator("#summary tbody tr")
    expect(lines).to_have_count(2)
    expect(owner.locator("#summary")).to_contain_text("Support")
    expect(owner.locator("#summary")).to_contain_text("Guide")
    expect(owner.locator("#summary .total")).to_have_text(total.inner_text())
    expect(owner.locator("blockquote.note")).to_contain_text("Five agents join on Monday")
    owner.screenshot(path=str(screenshots / "decision-link.png"), full_page=True)

    # Reject without a reason: refused (R19), the request stays pending, the refusal audited.
    owner.get_by_role("button", name="Reject").click()
    expect(owner.locator(".problem")).to_contain_text("comment")
    assert state_of(stack.db, request_id) == "pending"
    refused = audits(stack.db, request_id=request_id)
    assert [(a["code"], a["channel"], a["actor_id"]) for a in refused] == [
        ("invalid_message", "email_link", "acme-owner")
    ]

    # Approve: the change is applied, the page shows the outcome.
    owner.get_by_role("button", name="Approve").click()
    expect(owner.locator(".outcome")).to_contain_text("Approved by Olivia Owner at")
    assert state_of(stack.db, request_id) == "approved"
    assert history(stack.db, request_id) == [
        ("pending", "acme-admin", "web"),
        ("approved", "acme-owner", "email_link"),
    ]

    # The requester sees it approved on the Requests page, and is told by email.
    admin.goto(f"{stack.url}/requests")
    row = admin.locator("table.requests tbody tr").first
    expect(row).to_contain_text("Approved")
    expect(row).to_contain_text("Olivia Owner")
    admin.screenshot(path=str(screenshots / "requests.png"), full_page=True)
    mails(stack.smtp, emails["admin"], subject="approved")
    admin.goto(f"{stack.url}/requests/{request_id}")
    expect(admin.locator("table.history")).to_contain_text("Email link")
    expect(admin.locator("table.history")).to_contain_text("Console")
    admin.screenshot(path=str(screenshots / "request.png"), full_page=True)
    admin.goto(f"{stack.url}/subscription")
    expect(admin.locator("table.lines").first).to_contain_text("15")
    admin.screenshot(path=str(screenshots / "subscription.png"), full_page=True)

    # A second click of the same link shows the outcome, and offers nothing to press.
    again = browser.new_context(viewport=VIEWPORT).new_page()  # type: ignore[arg-type]
    again.goto(link)
    expect(again.locator(".outcome")).to_contain_text("Approved by Olivia Owner at")
    expect(again.get_by_role("button", name="Approve")).to_have_count(0)
    for page in (admin, owner, again):
        page.context.close()
    # C3: the token never reached a log (the web server writes no access log).
    token = link.rsplit("/", 1)[1]
    for log in stack.logs.values():
        assert token not in log.read_text()
