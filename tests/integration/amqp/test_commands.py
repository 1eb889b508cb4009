"""Every command of the contract over the real broker, with replies and correlation ids."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any

from consumers.client import SubreqClient
from tests.integration.amqp.support import (
    SEATS,
    RawClient,
    running_worker,
    url_of,
)
from tests.integration.helpers import account, member
from workflow.persistence.database import Database

REQUEST_FIELDS = {
    "request_id",
    "account_id",
    "requester_id",
    "state",
    "changes",
    "note",
    "summary",
    "created_at",
    "decided_at",
    "decided_by",
    "comment",
    "history",
}
MONEY = re.compile(r"^\d+\.\d{2}$")
GUIDE = [{"type": "add_product", "product": "guide", "plan": "professional"}]


def assert_utc(value: Any) -> None:
    assert isinstance(value, str), value
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), value


def assert_summary(summary: dict[str, Any]) -> None:
    assert {"currency", "billing_cycle", "lines", "total"} <= summary.keys()
    assert summary["currency"] == "USD"
    assert summary["billing_cycle"] == "monthly"
    assert MONEY.match(summary["total"]), summary["total"]
    assert summary["lines"]
    for line in summary["lines"]:
        assert {"item", "description", "current", "proposed", "cost"} <= line.keys()
        assert MONEY.match(line["cost"]), line


def assert_request(view: dict[str, Any], **expected: Any) -> None:
    assert view.keys() >= REQUEST_FIELDS, REQUEST_FIELDS - view.keys()
    assert_summary(view["summary"])
    assert_utc(view["created_at"])
    if view["decided_at"] is not None:
        assert_utc(view["decided_at"])
    assert view["history"]
    for step in view["history"]:
        assert {"from", "to", "trigger", "actor_id", "at", "reason"} <= step.keys()
        assert_utc(step["at"])
    assert view["history"][-1]["to"] == view["state"]
    for key, value in expected.items():
        assert view[key] == value, (key, view[key])


def assert_error(reply: dict[str, Any], code: str) -> dict[str, Any]:
    assert reply["ok"] is False, reply
    error = reply["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], list)
    return error


class Conversation:
    """Each command gets its own message_id and a DIFFERENT correlation_id, so the reply
    must carry the correlation_id (not the message_id) to be found at all."""

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.sent = 0

    def send(self, routing_key: str, body: dict[str, Any]) -> dict[str, Any]:
        self.sent += 1
        correlation_id = f"corr-{self.sent}"
        reply = self.client.call(
            routing_key, body, message_id=f"msg-{self.sent}", correlation_id=correlation_id
        )
        assert reply.correlation_id == correlation_id
        assert reply.properties.content_type == "application/json"
        # Contract, 2nd edition: the AMQP timestamp property (epoch seconds) of the answer.
        assert abs(reply.properties.timestamp - time.time()) < 60
        assert reply.routing_key == self.client.reply_queue
        assert len(self.client.replies_to(correlation_id)) == 1
        body_ = reply.json()
        assert body_.keys() == ({"ok", "result"} if body_["ok"] else {"ok", "error"}), body_
        return body_  # type: ignore[no-any-return]

    def ok(self, routing_key: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = self.send(routing_key, body)
        assert reply["ok"] is True, reply
        return reply["result"]  # type: ignore[no-any-return]


def test_every_contract_command_is_answered_over_amqp_with_its_correlation_id(
    amqp_url: str, database: Database, client: RawClient
) -> None:
    talk = Conversation(client)
    with running_worker(amqp_url, url_of(database), relay=False):
        # account.upsert, member.upsert, member.remove
        assert talk.ok("account.upsert", account("acme"))["account_id"] == "acme"
        for user, role in [
            ("owner", "owner"),
            ("billing", "billing_admin"),
            ("admin", "admin"),
            ("agent", "agent"),
            ("leaver", "agent"),
        ]:
            result = talk.ok("member.upsert", member(f"acme-{user}", role))
            assert result["account_id"] == "acme"
        removed = talk.ok("member.remove", {"account_id": "acme", "user_id": "acme-leaver"})
        assert removed["account_id"] == "acme"
        gone = talk.send("member.remove", {"account_id": "acme", "user_id": "acme-leaver"})
        assert_error(gone, "unknown_member")

        # request.preview: a summary, no state change
        preview = talk.ok(
            "request.preview", {"account_id": "acme", "actor_id": "acme-admin", "changes": SEATS}
        )
        assert preview.keys() == {"summary"}
        assert_summary(preview["summary"])
        (line,) = preview["summary"]["lines"]
        assert line["item"] == SEATS[0]

        # request.submit: a rule refusal is a normal error reply
        assert_error(
            talk.send(
                "request.submit",
                {"account_id": "acme", "actor_id": "acme-owner", "changes": SEATS},
            ),
            "forbidden",
        )
        first = talk.ok(
            "request.submit",
            {"account_id": "acme", "actor_id": "acme-admin", "changes": SEATS, "note": "busy"},
        )["request"]
        assert_request(
            first,
            account_id="acme",
            requester_id="acme-admin",
            state="pending",
            note="busy",
            changes=SEATS,
            decided_at=None,
            decided_by=None,
            comment=None,
        )
        assert first["summary"] == preview["summary"]
        assert [(s["from"], s["to"]) for s in first["history"]] == [(None, "pending")]
        pending = talk.send(
            "request.submit", {"account_id": "acme", "actor_id": "acme-admin", "changes": GUIDE}
        )
        assert first["request_id"] in assert_error(pending, "request_pending")["message"]

        # request.get: members of the account only
        got = talk.ok("request.get", {"request_id": first["request_id"], "actor_id": "acme-agent"})[
            "request"
        ]
        assert got == first
        stranger = talk.send(
            "request.get", {"request_id": first["request_id"], "actor_id": "nobody"}
        )
        assert stranger["ok"] is False

        # request.cancel
        cancelled = talk.ok(
            "request.cancel",
            {"request_id": first["request_id"], "actor_id": "acme-admin", "reason": "oops"},
        )["request"]
        assert_request(cancelled, request_id=first["request_id"], state="cancelled")

        # request.decide
        second = talk.ok(
            "request.submit", {"account_id": "acme", "actor_id": "acme-admin", "changes": GUIDE}
        )["request"]
        assert_error(
            talk.send(
                "request.decide",
                {
                    "request_id": second["request_id"],
                    "actor_id": "acme-admin",
                    "decision": "approve",
                },
            ),
            "forbidden",
        )
        approved = talk.ok(
            "request.decide",
            {
                "request_id": second["request_id"],
                "actor_id": "acme-billing",
                "decision": "approve",
                "comment": "fine",
            },
        )["request"]
        assert_request(
            approved,
            request_id=second["request_id"],
            state="approved",
            decided_by="acme-billing",
            comment="fine",
        )
        assert approved["decided_at"] is not None
        again = talk.send(
            "request.decide",
            {"request_id": second["request_id"], "actor_id": "acme-owner", "decision": "approve"},
        )
        assert "approved" in assert_error(again, "invalid_state")["message"]

        # request.list: newest first, optionally by state
        listed = talk.ok("request.list", {"account_id": "acme", "actor_id": "acme-owner"})
        assert listed.keys() == {"requests"}
        assert [r["request_id"] for r in listed["requests"]] == [
            second["request_id"],
            first["request_id"],
        ]
        for view in listed["requests"]:
            assert_request(view)
        only_cancelled = talk.ok(
            "request.list", {"account_id": "acme", "actor_id": "acme-owner", "state": "cancelled"}
        )
        assert [r["request_id"] for r in only_cancelled["requests"]] == [first["request_id"]]

        # Without a correlation_id, the reply carries the message_id.
        client.publish(
            "request.get",
            {"request_id": second["request_id"], "actor_id": "acme-admin"},
            message_id="no-correlation-id",
        )
        reply = client.reply_to("no-correlation-id")
        assert reply.json()["result"]["request"]["state"] == "approved"


def test_project_client_drives_the_whole_workflow(
    amqp_url: str, database: Database, client: RawClient
) -> None:
    """``SubreqClient`` (direct reply-to) against a running worker: its per-command methods."""
    with running_worker(amqp_url, url_of(database), relay=False), SubreqClient(amqp_url) as sub:
        assert (
            sub.upsert_account(
                "beta", "Beta Inc.", "sales_assisted", True, account("beta")["subscription"]
            ).account_id
            == "beta"
        )
        for user, role in [("owner", "owner"), ("admin", "admin"), ("temp", "agent")]:
            assert (
                sub.upsert_member(
                    "beta", f"beta-{user}", user.title(), f"{user}@beta.example", role
                ).user_id
                == f"beta-{user}"
            )
        assert sub.remove_member("beta", "beta-temp").account_id == "beta"
        assert sub.preview("beta", "beta-admin", SEATS).lines
        first = sub.submit("beta", "beta-admin", SEATS, note="n")
        assert sub.get_request(first.request_id, "beta-owner") == first
        assert sub.cancel(first.request_id, "beta-admin", "changed my mind").state == "cancelled"
        second = sub.submit("beta", "beta-admin", GUIDE)
        rejected = sub.decide(second.request_id, "beta-owner", "reject", "too expensive")
        assert rejected.state == "rejected"
        states = [r.state for r in sub.list_requests("beta", "beta-owner")]
        assert states == ["rejected", "cancelled"]
        assert sub.list_requests("beta", "beta-owner", state="pending") == []
