"""Scenario 6: authority (R1-R4, R15) attacked from every side, over the broker.

Account A has a pending request R of its admin. Then everyone who must not may try:
members of another account (its owner, its billing admin), members of A without the
role (the requester itself, another admin, an agent, a billing admin demoted to agent),
members removed from A, the requester through another id of theirs (an owner of its
own account, a billing admin elsewhere), ids that only look like A's owner (case,
zero-width space, a Unicode hyphen, a fullwidth letter) and nobody at all. Each one
submits, approves, rejects, cancels, reads and lists, once plainly and once with every
forged claim a message can carry (``role``, ``roles``, ``is_owner``, an ``actor``
object, ``on_behalf_of``, ``decided_by``, ``account_id`` of their own account, headers
``x-role``/``x-user-id``, ``app_id``).

Pass: none of it is allowed (a ``forbidden`` or ``unknown_member`` refusal naming one
of R1-R4); each attempt has exactly one audit row with its command, actor and code
(R15); R is still pending with one history entry and the subscription untouched; and
then A's owner approves it.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from typing import Any

import orjson
import pytest

from tests.chaos.figures import report
from tests.chaos.publisher import ResilientClient
from tests.chaos.stack import Stack
from tests.integration.helpers import account, member, wait_until
from workflow.app.service import CommandService
from workflow.contract.names import COMMANDS_QUEUE
from workflow.domain.catalog import Catalog

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.slow]

A, B, C = "auth-a", "auth-b", "auth-c"
SEATS = [{"type": "add_seats", "product": "support", "quantity": 5}]

DIRECTORY = [
    (A, "a-owner", "owner"),
    (A, "a-billing", "billing_admin"),
    (A, "a-admin", "admin"),  # the requester
    (A, "a-admin2", "admin"),
    (A, "a-agent", "agent"),
    (A, "a-demoted", "billing_admin"),  # demoted to agent below
    (A, "a-billing-gone", "billing_admin"),  # removed below
    (A, "a-admin-gone", "admin"),  # removed below
    (B, "b-owner", "owner"),
    (B, "b-billing", "billing_admin"),
    (B, "b-admin", "admin"),
    (B, "a-admin-alt", "billing_admin"),  # the requester's other id
    (C, "a-admin", "owner"),  # the requester owns another account, same id
]
OUTSIDERS = ["b-owner", "b-billing", "b-admin", "a-admin-alt", "nobody"]
GONE = ["a-billing-gone", "a-admin-gone"]
LOOKALIKES = ["A-OWNER", "a-owner\u200b", "a\u2010owner", "\uff41-owner", "a-owner\x7f"]
# Who must never succeed at what (the requester may cancel; members may read).
NEVER = {
    "submit": ["a-owner", "a-billing", "a-agent", "a-demoted", *GONE, *OUTSIDERS, *LOOKALIKES],
    "approve": ["a-admin", "a-admin2", "a-agent", "a-demoted", *GONE, *OUTSIDERS, *LOOKALIKES],
    "reject": ["a-admin", "a-admin2", "a-agent", "a-demoted", *GONE, *OUTSIDERS, *LOOKALIKES],
    "cancel": ["a-admin2", "a-agent", "a-demoted", *GONE, *OUTSIDERS, *LOOKALIKES],
    "get": [*GONE, *OUTSIDERS, *LOOKALIKES],
    "list": [*GONE, *OUTSIDERS, *LOOKALIKES],
}
FORGED: dict[str, Any] = {
    "role": "owner",
    "roles": ["owner", "billing_admin"],
    "is_owner": True,
    "permissions": ["billing"],
    "actor": {"user_id": "a-owner", "role": "owner", "account_id": A},
    "on_behalf_of": "a-owner",
    "decided_by": "a-owner",
    "approver_id": "a-owner",
    "user_id": "a-owner",
}
FORGED_PROPERTIES: dict[str, Any] = {
    "headers": {"x-role": "owner", "x-user-id": "a-owner", "x-account-id": A},
    "app_id": "billing",
}


def _seed(stack: Stack, catalog: Catalog) -> None:
    items: list[tuple[str, bytes, None]] = [
        ("account.upsert", orjson.dumps(account(a)), None) for a in (A, B, C)
    ]
    items += [
        ("member.upsert", orjson.dumps(member(user, role, acct)), None)
        for acct, user, role in DIRECTORY
    ]
    items.append(("member.upsert", orjson.dumps(member("a-demoted", "agent", A)), None))
    items += [
        ("member.remove", orjson.dumps({"account_id": A, "user_id": user}), None) for user in GONE
    ]
    outcomes = CommandService(stack.db, catalog).handle_batch(items)
    assert all(o.json()["ok"] for o in outcomes), [o.json() for o in outcomes]


def _body(what: str, actor: str, request_id: str, forged: bool) -> tuple[str, dict[str, Any]]:
    if what == "submit":
        key, body = "request.submit", {"account_id": A, "actor_id": actor, "changes": SEATS}
    elif what in ("approve", "reject"):
        key = "request.decide"
        body = {"request_id": request_id, "actor_id": actor, "decision": what, "comment": "mine"}
    elif what == "cancel":
        key, body = "request.cancel", {"request_id": request_id, "actor_id": actor}
    elif what == "get":
        key, body = "request.get", {"request_id": request_id, "actor_id": actor}
    else:
        key, body = "request.list", {"account_id": A, "actor_id": actor}
    if forged:
        own = next((acct for acct, user, _ in DIRECTORY if user == actor), A)
        body = {**FORGED, **body}
        if what not in ("submit", "list"):
            body["account_id"] = own  # decide/cancel/get carry no account: ignored
    return key, body


def test_nobody_without_the_role_decides_cancels_or_reads_and_every_attempt_is_audited(
    stack: Stack, catalog: Catalog, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    _seed(stack, catalog)
    client = ResilientClient(stack.amqp_url, secrets.token_hex(4), name="chaos-authority")
    for n in range(2):
        stack.spawn(f"worker-{n}", "--prefetch", "20", "--batch", "10")
    attempts: dict[str, tuple[str, str, str, dict[str, Any]]] = {}
    replies: dict[str, dict[str, Any]] = {}

    def collect(until: set[str], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while until - replies.keys() and time.monotonic() < deadline:
            client.pump(0.05)
            for reply in client.take_arrivals():
                replies[reply.correlation_id] = reply.json()

    def send(what: str, actor: str, request_id: str, forged: bool) -> str:
        key, body = _body(what, actor, request_id, forged)
        mid = f"{what}-{len(attempts)}-{'forged' if forged else 'plain'}"
        props = FORGED_PROPERTIES if forged else None
        client.publish(
            key, orjson.dumps(body), message_id=mid, correlation_id=mid, properties=props
        )
        attempts[mid] = (what, actor, key, body)
        return mid

    try:
        wait_until(
            lambda: client.queue_state(COMMANDS_QUEUE)[1] == 2,
            timeout=60,
            what="two workers to consume",
        )
        # 1. submits by everyone who may not, while nothing is pending (so only R1/R3 apply)
        for actor in NEVER["submit"]:
            for forged in (False, True):
                send("submit", actor, "", forged)
        collect(set(attempts))
        # 2. the requester's own submit, then every other attempt at once, on two workers
        legit = {"account_id": A, "actor_id": "a-admin", "changes": SEATS}
        client.publish("request.submit", orjson.dumps(legit), message_id="r", correlation_id="r")
        collect({"r"})
        assert replies["r"]["ok"], replies["r"]
        request_id = replies["r"]["result"]["request"]["request_id"]
        for what in ("approve", "reject", "cancel", "get", "list"):
            for actor in NEVER[what]:
                for forged in (False, True):
                    send(what, actor, request_id, forged)
        collect(set(attempts))
        state_after_attacks = stack.scalar(
            "SELECT state FROM requests WHERE request_id = :r", r=request_id
        )
        history_after_attacks = stack.scalar(
            "SELECT count(*) FROM request_transitions WHERE request_id = :r", r=request_id
        )
        seats_after_attacks = stack.scalar(
            "SELECT seats FROM subscription_products WHERE account_id = :a", a=A
        )
        # 3. the owner may
        owner = {"request_id": request_id, "actor_id": "a-owner", "decision": "approve"}
        client.publish("request.decide", orjson.dumps(owner), message_id="ok", correlation_id="ok")
        collect({"ok"})
    finally:
        client.close()

    audits = {
        row[0]: row[1:]
        for row in stack.rows(
            "SELECT idempotency_key, command, actor_id, code, details FROM audit_log "
            "WHERE idempotency_key IS NOT NULL"
        )
    }
    audit_rows = Counter(row[0] for row in stack.rows("SELECT idempotency_key FROM audit_log"))
    problems: list[str] = []
    allowed = unanswered = badly_audited = 0
    for mid, (what, actor, key, body) in attempts.items():
        reply = replies.get(mid)
        if reply is None:
            unanswered += 1
            problems.append(f"{mid} ({what} by {actor!r}): no reply")
            continue
        if reply["ok"]:
            allowed += 1
            problems.append(
                f"{mid} ({what} by {actor!r}) was ALLOWED: {orjson.dumps(reply)[:300]!r}"
            )
            continue
        error = reply["error"]
        rules = {d.get("rule") for d in error.get("details", [])}
        if error["code"] not in ("forbidden", "unknown_member") or not rules & {
            "R1",
            "R2",
            "R3",
            "R4",
        }:
            problems.append(f"{mid} ({what} by {actor!r}) refused as {error['code']} {rules}")
        row = audits.get(f"id:{mid}")
        if (
            row is None
            or audit_rows[f"id:{mid}"] != 1
            or row[0] != key
            or row[1] != body["actor_id"]
            or row[2] != error["code"]
        ):
            badly_audited += 1
            problems.append(f"{mid} ({what} by {actor!r}) audited as {row}")
    if state_after_attacks != "pending" or history_after_attacks != 1:
        problems.append(f"R after the attempts: {state_after_attacks}, {history_after_attacks}")
    if seats_after_attacks != 10:
        problems.append(f"the subscription changed under the attempts: {seats_after_attacks}")
    if not replies.get("ok", {}).get("ok"):
        problems.append(f"the owner could not approve afterwards: {replies.get('ok')}")
    extra = sum(audit_rows.values()) - len(attempts)
    if extra:
        problems.append(f"{extra} audit rows beyond the attempts")

    figures = {
        "attempts": len(attempts),
        "allowed": allowed,
        "unanswered": unanswered,
        "audited": sum(audit_rows.values()),
        "badly_audited": badly_audited,
        "request_after": f"{state_after_attacks}/{history_after_attacks} transition(s)",
        "owner_approved": bool(replies.get("ok", {}).get("ok")),
        "seconds": round(time.monotonic() - started, 1),
    }
    report(request, "authority", figures)
    if problems:
        print(stack.logs(3000))
    assert not problems, f"{len(problems)} authority problems:\n- " + "\n- ".join(problems[:40])
