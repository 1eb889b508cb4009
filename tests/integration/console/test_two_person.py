"""Two-person approval (R23) through the console, against the running installation: the
owner's decision link records the first approval (and is used up by it), the request page
says a second decider is needed and offers the first approver no second *Approve*, the
billing admin's email asks for the second approval with a link of its own, and that
approval applies the change. Every step is the contract's command (C1), with its channel."""

from __future__ import annotations

import httpx

from tests.integration.console.conftest import Stack
from tests.integration.console.support import (
    audits,
    csrf_in,
    history,
    link_in,
    mails,
    people,
    signed_in,
    state_of,
)
from tests.integration.helpers import SEATS, account, send


def test_two_deciders_approve_through_their_links_and_the_first_cannot_again(
    stack: Stack,
) -> None:
    emails = people(stack.service, "pair")
    upsert = {**account("pair"), "approval": {"second_above": "500.00"}}
    assert send(stack.service, "account.upsert", upsert)["ok"]
    bella = {
        "account_id": "pair",
        "user_id": "pair-billing",
        "name": "Bella Billing",
        "email": "billing@pair.example",
        "role": "billing_admin",
    }
    assert send(stack.service, "member.upsert", bella)["ok"]
    reply = send(
        stack.service,
        "request.submit",
        {"account_id": "pair", "actor_id": "pair-admin", "changes": SEATS},
    )
    request_id = reply["result"]["request"]["request_id"]
    owner_link = link_in(mails(stack.smtp, emails["owner"], subject="asks to change")[-1], "r")
    path = owner_link.removeprefix(stack.url)

    with httpx.Client(base_url=stack.url, timeout=10) as owner:
        page = owner.get(path)
        assert "needs the approvals of two different deciders" in page.text
        assert "575.00 USD" in page.text
        assert "500.00 USD" in page.text
        form = {"csrf": csrf_in(page.text, f"{path}/decide"), "decision": "approve"}
        done = owner.post(f"{path}/decide", data={**form, "comment": "fine by me"})
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"{path}?notice=approval_recorded"
        after = owner.get(done.headers["location"]).text
        assert "Your approval was recorded" in after
        assert "You approved this request with this link" in after  # used up (C3)
        assert 'value="approve"' not in after
        assert "Olivia Owner" in after
        assert "fine by me" in after
    assert state_of(stack.db, request_id) == "pending"

    # Signed in, the owner is offered no second approval; a forged one is refused (R23).
    web = signed_in(stack.url, stack.smtp, emails["owner"])
    page_url = f"/requests/{request_id}"
    mine = web.get(page_url).text
    assert "You approved this request; another decider must approve it too" in mine
    assert 'value="approve"' not in mine
    assert 'value="reject"' in mine
    token = csrf_in(mine, f"{page_url}/decide")
    refused = web.post(f"{page_url}/decide", data={"csrf": token, "decision": "approve"})
    assert refused.status_code == 403
    assert "approved this request already" in refused.text
    assert audits(stack.db, actor_id="pair-owner")[-1]["code"] == "forbidden"
    web.close()

    # The billing admin is asked for the second approval, with a link of her own.
    mail = mails(stack.smtp, bella["email"], subject="a second approval is needed")[-1]
    bella_path = link_in(mail, "r").removeprefix(stack.url)
    with httpx.Client(base_url=stack.url, timeout=10) as second:
        page = second.get(bella_path)
        assert "Approved by Olivia Owner; it needs the approval of another decider" in page.text
        form = {"csrf": csrf_in(page.text, f"{bella_path}/decide"), "decision": "approve"}
        done = second.post(f"{bella_path}/decide", data=form)
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"{bella_path}?notice=approved"
        final = second.get(bella_path).text
        assert "Approved by Bella Billing" in final
    assert state_of(stack.db, request_id) == "approved"
    assert history(stack.db, request_id) == [
        ("pending", "pair-admin", "amqp"),
        ("pending", "pair-owner", "email_link"),
        ("approved", "pair-billing", "email_link"),
    ]
    mails(stack.smtp, emails["admin"], subject="was approved")
