"""``SubreqClient`` against a real worker: every method's typed result, refusals raised as
the error of their code with machine-readable details, and timeouts that a retry with
the same message_id resolves without a second effect."""

from __future__ import annotations

from decimal import Decimal

import pytest

from consumers.client import ReplyTimeout, SubreqClient
from consumers.replies import (
    Forbidden,
    InvalidChange,
    InvalidMessage,
    InvalidState,
    NotEligible,
    NotFound,
    Refusal,
    RequestPending,
    UnknownAccount,
    UnknownMember,
)
from tests.integration.amqp.support import (
    Broker,
    close_connections,
    count,
    running_worker,
    seed_accounts,
    url_of,
)
from workflow.contract.envelopes import AccountUpserted, CatalogView, MemberRemoved
from workflow.contract.messages import RequestView, Summary
from workflow.domain.catalog import Catalog
from workflow.persistence.database import Database

SUBSCRIPTION = {
    "currency": "USD",
    "billing_cycle": "monthly",
    "products": [{"product": "support", "plan": "professional", "seats": 10}],
}


def test_every_method_returns_the_reply_as_the_contracts_models(
    amqp_url: str, database: Database, broker: Broker
) -> None:
    with running_worker(amqp_url, url_of(database), relay=False), SubreqClient(amqp_url) as sub:
        created = sub.upsert_account("beta", "Beta Inc.", "sales_assisted", True, SUBSCRIPTION)
        assert created == AccountUpserted(account_id="beta", created=True, voided=[])
        for user, role in [("owner", "owner"), ("billing", "billing_admin"), ("admin", "admin")]:
            member = sub.upsert_member("beta", f"beta-{user}", user, f"{user}@beta.example", role)
            assert (member.account_id, member.user_id, member.created) == (
                "beta",
                f"beta-{user}",
                True,
            )
        again = sub.upsert_member("beta", "beta-temp", "Temp", "temp@beta.example", "agent", "it")
        assert again.created is True
        assert sub.remove_member("beta", "beta-temp") == MemberRemoved(
            account_id="beta", user_id="beta-temp", removed=True
        )

        catalog = sub.get_catalog()
        assert isinstance(catalog, CatalogView)
        support = next(p for p in catalog.products if p.id == "support")
        professional = next(p for p in support.plans if p.id == "professional")
        price = professional.prices["USD"].monthly
        assert [p.id for p in support.plans] == [  # rank order, lowest first
            "team",
            "growth",
            "professional",
            "enterprise",
            "enterprise_plus",
        ]
        assert "USD" in catalog.currencies
        assert catalog.billing_cycles == ["monthly", "annual"]

        seats = [{"type": "add_seats", "product": "support", "quantity": 5}]
        summary = sub.preview("beta", "beta-admin", seats)  # type: ignore[list-item]
        assert isinstance(summary, Summary)
        assert Decimal(summary.total) == 5 * Decimal(price)  # catalog.get prices the form
        assert (summary.currency, summary.billing_cycle, summary.period) == (
            "USD",
            "monthly",
            "month",
        )

        first = sub.submit("beta", "beta-admin", seats, note="n")  # type: ignore[arg-type]
        assert isinstance(first, RequestView)
        assert (first.state, first.note, first.requester_id) == ("pending", "n", "beta-admin")
        assert first.summary == summary
        assert sub.get_request(first.request_id, "beta-owner") == first
        cancelled = sub.cancel(first.request_id, "beta-admin", "changed my mind")
        assert cancelled.state == "cancelled"
        assert [(h.from_, h.to) for h in cancelled.history] == [
            (None, "pending"),
            ("pending", "cancelled"),
        ]

        guide = [{"type": "add_product", "product": "guide", "plan": "professional"}]
        second = sub.submit("beta", "beta-admin", guide)  # type: ignore[arg-type]
        rejected = sub.decide(second.request_id, "beta-owner", "reject", "too expensive")
        assert (rejected.state, rejected.comment, rejected.decided_by) == (
            "rejected",
            "too expensive",
            "beta-owner",
        )
        # R23: above the threshold the first approval is one of two; it stays while the
        # account's other fields change, and None removes it.
        two = sub.upsert_account(
            "beta", "Beta Inc.", "sales_assisted", True, approval={"second_above": "100.00"}
        )
        assert two.approval is not None
        assert (two.approval.second_above, two.approval.currency) == ("100.00", "USD")
        kept = sub.upsert_account("beta", "Beta Inc.", "sales_assisted", True)
        assert kept.approval == two.approval
        third = sub.submit("beta", "beta-admin", seats)  # type: ignore[arg-type]
        once = sub.decide(third.request_id, "beta-owner", "approve", "one of two")
        assert once.state == "pending"
        assert [(a.actor_id, a.comment) for a in once.approvals] == [("beta-owner", "one of two")]
        approved = sub.decide(third.request_id, "beta-billing", "approve")
        assert approved.state == "approved"
        assert approved.decided_at is not None
        assert [a.actor_id for a in approved.approvals] == ["beta-owner", "beta-billing"]
        removed = sub.upsert_account("beta", "Beta Inc.", "sales_assisted", True, approval=None)
        assert removed.approval is None

        listed = sub.list_requests("beta", "beta-owner")
        assert [r.request_id for r in listed] == [
            third.request_id,
            second.request_id,
            first.request_id,
        ]
        assert [r.state for r in listed] == ["approved", "rejected", "cancelled"]
        assert sub.list_requests("beta", "beta-owner", state="pending") == []
        assert sub.list_requests("beta", "beta-owner", state="rejected") == [rejected]


def test_refusals_raise_the_error_of_their_code_with_its_details(
    amqp_url: str, database: Database, catalog: Catalog, broker: Broker
) -> None:
    (acct,) = seed_accounts(database, catalog, 1, "ref", owner=True)
    admin, owner = f"{acct}-admin", f"{acct}-owner"
    seats = [{"type": "add_seats", "product": "support", "quantity": 5}]
    with running_worker(amqp_url, url_of(database), relay=False), SubreqClient(amqp_url) as sub:
        pending = sub.submit(acct, admin, seats)  # type: ignore[arg-type]
        with pytest.raises(RequestPending) as blocked:
            sub.submit(acct, admin, seats, note="again")  # type: ignore[arg-type]
        assert blocked.value.code == "request_pending"
        assert blocked.value.request_id == pending.request_id
        (detail,) = blocked.value.details
        assert (detail.code, detail.rule, detail.request_id) == (
            "request_pending",
            "R11",
            pending.request_id,
        )
        assert blocked.value.message
        assert isinstance(blocked.value, Refusal)

        with pytest.raises(InvalidMessage) as no_comment:
            sub.decide(pending.request_id, owner, "reject")
        assert no_comment.value.fields == ["comment"]
        assert no_comment.value.rules == ["R19"]

        with pytest.raises(Forbidden) as forbidden:
            sub.decide(pending.request_id, admin, "approve")
        assert forbidden.value.rules == ["R2"]

        sub.cancel(pending.request_id, admin)
        with pytest.raises(InvalidState):
            sub.cancel(pending.request_id, admin)
        with pytest.raises(NotFound):
            sub.get_request("no-such-request", admin)
        with pytest.raises(UnknownAccount):
            sub.preview("no-such-account", admin, seats)  # type: ignore[arg-type]
        with pytest.raises(UnknownMember):
            sub.remove_member(acct, "nobody")

        bad = [
            {"type": "add_seats", "product": "support", "quantity": 0},
            {"type": "add_product", "product": "nothing", "plan": "team"},
        ]
        with pytest.raises(InvalidChange) as invalid:
            sub.preview(acct, admin, bad)  # type: ignore[arg-type]
        assert invalid.value.fields == ["changes[0].quantity", "changes[1].product"]
        assert [d.code for d in invalid.value.details] == ["invalid_change"] * 2

        sub.upsert_account(acct, "Ref", "self_service", False, None)
        with pytest.raises(NotEligible):
            sub.submit(acct, admin, seats)  # type: ignore[arg-type]


def test_a_timeout_raises_reply_timeout_and_a_retry_with_its_message_id_has_one_effect(
    amqp_url: str, database: Database, catalog: Catalog, broker: Broker
) -> None:
    (acct,) = seed_accounts(database, catalog, 1, "late")
    seats = [{"type": "add_seats", "product": "support", "quantity": 5}]
    with SubreqClient(amqp_url, timeout=0.3) as sub:
        # No worker yet: the command waits in the queue, the reply does not come in time.
        with pytest.raises(ReplyTimeout) as late:
            sub.submit(acct, f"{acct}-admin", seats)  # type: ignore[arg-type]
        with pytest.raises(ReplyTimeout):
            sub.get_catalog(timeout=0.2)
        message_id = late.value.message_id
        assert message_id
        with running_worker(amqp_url, url_of(database), relay=False):
            retried = sub.submit(
                acct,
                f"{acct}-admin",
                seats,  # type: ignore[arg-type]
                message_id=message_id,
                timeout=15,
            )
            assert retried.state == "pending"
            again = sub.submit(acct, f"{acct}-admin", seats, message_id=message_id)  # type: ignore[arg-type]
            assert again == retried
    assert count(database, "requests") == 1


def test_the_client_skips_a_dead_address_and_fails_over_when_its_connection_is_lost(
    amqp_url: str, database: Database, broker: Broker
) -> None:
    """The first address answers nothing (port 1); the client takes the next. Then the
    broker closes the client's connection while it awaits a reply: it connects again
    and publishes the command again with the same message_id, one effect, one reply."""
    dead = "amqp://guest:guest@127.0.0.1:1/%2F"
    body = {
        "account_id": "failover",
        "name": "Failover Inc.",
        "type": "sales_assisted",
        "allows_subscription_changes": True,
    }
    with SubreqClient(f"{dead},{amqp_url}", timeout=20) as sub:
        # No worker yet: the command waits in the queue while the connection goes.
        sent = sub.publish("account.upsert", body, message_id="failover-1")
        assert close_connections(broker.vhost, "subreq-client") == 1
        with running_worker(amqp_url, url_of(database), relay=False):
            reply = sub.wait(sent)
            assert reply["ok"], reply
            assert reply["result"]["account_id"] == "failover"
            assert sub._broker.failovers == 1
            assert sub.get_catalog().products, "the new connection serves the next command"
    assert count(database, "processed_commands", key="id:failover-1") == 1
    assert count(database, "accounts", account_id="failover") == 1
