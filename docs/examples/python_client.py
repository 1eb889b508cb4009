"""An integrator's session with subreq through ``consumers.client.SubreqClient``.

Sets up an account and its members, prices a change from the catalog, previews and
submits it, is refused a second submit, and has the owner approve the first.

    python docs/examples/python_client.py [AMQP_URL]   # default: $SUBREQ_AMQP_URL

A worker must be running against the same broker (``subreq worker``). The test suite
runs this file as it is (tests/integration/amqp/test_integrator_examples.py).
"""

from __future__ import annotations

import os
import sys
import uuid
from decimal import Decimal

from consumers.client import (
    ChangeItem,
    Forbidden,
    ReplyTimeout,
    RequestPending,
    RequestView,
    SubreqClient,
)

ACCOUNT = "globex"
OWNER, ADMIN = "globex-owner", "globex-admin"


# guide: retry
def submit_once(client: SubreqClient, changes: list[ChangeItem], attempts: int = 3) -> RequestView:
    """Retries reuse one message_id: however many attempts reach the worker, one request."""
    message_id = str(uuid.uuid4())
    for attempt in range(1, attempts + 1):
        try:
            return client.submit(ACCOUNT, ADMIN, changes, message_id=message_id, timeout=5)
        except ReplyTimeout:
            print(f"no reply to attempt {attempt}; retrying with message_id {message_id}")
    raise SystemExit("no reply: is a worker running?")


# /guide


def main(url: str) -> None:
    with SubreqClient(url, timeout=10) as client:
        # guide: setup
        account = client.upsert_account(
            ACCOUNT,
            "Globex Corporation",
            "sales_assisted",
            allows_subscription_changes=True,
            subscription={
                "currency": "USD",
                "billing_cycle": "monthly",
                "products": [{"product": "support", "plan": "professional", "seats": 10}],
            },
        )
        print(f"account {account.account_id}: {'created' if account.created else 'updated'}")
        client.upsert_member(ACCOUNT, OWNER, "Olga Owner", "olga@globex.example", "owner")
        client.upsert_member(ACCOUNT, ADMIN, "Abe Admin", "abe@globex.example", "admin")
        print(f"members: {OWNER} (owner), {ADMIN} (admin)")
        # /guide

        # guide: catalog
        catalog = client.get_catalog()
        support = next(p for p in catalog.products if p.id == "support")
        plan = next(p for p in support.plans if p.id == "professional")
        per_seat = Decimal(plan.prices["USD"].monthly)
        addable = [p.id for p in catalog.products if p.addable]
        print(f"catalog: {support.name} {plan.name} is {per_seat} USD per seat per month")
        print(f"catalog: products a request may add: {', '.join(addable)}")
        # /guide

        changes: list[ChangeItem] = [{"type": "add_seats", "product": "support", "quantity": 5}]
        # guide: preview
        summary = client.preview(ACCOUNT, ADMIN, changes)
        assert Decimal(summary.total) == 5 * per_seat  # the form's price is the service's
        print(f"preview: +{summary.total} {summary.currency} per {summary.period}")
        # /guide

        request = submit_once(client, changes)
        print(f"submitted: request {request.request_id} is {request.state}")

        # guide: refusals
        try:
            client.submit(ACCOUNT, ADMIN, changes)  # while the first is pending
        except RequestPending as refused:
            print(f"refused: {refused.code}: pending request {refused.request_id}")
        try:
            client.decide(request.request_id, ADMIN, "approve")
        except Forbidden as refused:
            print(f"refused: {refused.code} by {', '.join(refused.rules)}: {refused.message}")
        # /guide

        approved = client.decide(request.request_id, OWNER, "approve", "welcome aboard")
        print(
            f"approved: request {approved.request_id} is {approved.state} by {approved.decided_by}"
        )
        for step in approved.history:
            print(f"history: {step.from_ or '-'} -> {step.to} by {step.actor_id}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.environ["SUBREQ_AMQP_URL"])
