"""The load of the fault scenarios: a model of every account, and a closed loop driving it.

Each account runs its own random script, one command at a time (the next command is
chosen once the reply to the previous one arrived), so the effect and the reply of
every command are known in advance: a submit succeeds when nothing is pending and is
refused with ``request_pending`` (naming the pending request) when something is; an
approval adds one seat; an admin deciding is refused with ``forbidden``; and so on.
A reply that differs from the model is a *mismatch*: the account's script stops there
(everything after it would be wrong too) and the scenario fails.

Many accounts run at once, paced so the load lasts ``seconds``: faults land while
commands are in flight. Some commands are published twice at once with the same
``message_id`` (``~dup``, a racing duplicate), some again long after their reply
(``~late``): every copy must get the very same reply, and only one effect.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from tests.chaos.faults import Fault
from tests.chaos.publisher import Reply, ResilientClient

SEATS_AT_START = 10  # tests.integration.helpers.account: support, professional, 10 seats
SEATS = [{"type": "add_seats", "product": "support", "quantity": 1}]
QUERIES = frozenset({"get", "list", "preview"})
STALL = 30.0  # seconds without any reply while commands are outstanding: the load stops

# (kind, weight) when nothing is pending / when a request is pending.
IDLE_KINDS = [
    ("submit", 55),
    ("rename", 7),
    ("member", 7),
    ("list", 5),
    ("get", 6),
    ("preview", 5),
    ("submit_agent", 6),
    ("decide_final", 6),
]
PENDING_KINDS = [
    ("approve", 28),
    ("reject", 14),
    ("withdraw", 12),
    ("cancel", 8),
    ("submit_again", 8),
    ("decide_admin", 7),
    ("get", 7),
    ("rename", 5),
    ("member", 5),
    ("list", 3),
]
FINAL_OF = {
    "approve": "approved",
    "reject": "rejected",
    "withdraw": "cancelled",
    "cancel": "cancelled",
}


@dataclass
class Command:
    message_id: str
    account_id: str
    kind: str
    routing_key: str
    body: dict[str, Any]
    expect: str  # "ok" or the error code the model predicts
    request_id: str | None = None
    sent_at: float = 0.0

    @property
    def effect(self) -> bool:
        """Stored in processed_commands (everything but the queries)."""
        return self.kind not in QUERIES


@dataclass
class Account:
    account_id: str
    budget: int
    name: str = ""
    admin_locale: str = "en"
    renames: int = 0
    seats: int = SEATS_AT_START
    pending: str | None = None
    last: str | None = None
    states: dict[str, str] = field(default_factory=dict)
    ended_by: dict[str, str] = field(default_factory=dict)  # request -> kind that ended it
    in_flight: Command | None = None
    diverged: str | None = None

    def user(self, role: str) -> str:
        return f"{self.account_id}-{role}"


class Workload:
    """Drives the accounts through the broker and checks every reply against the model."""

    def __init__(
        self,
        client: ResilientClient,
        account_ids: Sequence[str],
        commands: int,
        seconds: float,
        rng: random.Random,
        *,
        dup_rate: float = 0.08,
        late_rate: float = 0.05,
    ) -> None:
        self.client = client
        self.rng = rng
        self.rate = commands / seconds
        self.dup_rate = dup_rate
        self.late_rate = late_rate
        per, extra = divmod(commands, len(account_ids))
        self.accounts = {
            a: Account(a, per + (1 if i < extra else 0), name=f"{a.title()} Inc.")
            for i, a in enumerate(account_ids)
        }
        self.to_issue = commands
        self.ready = {a for a, acct in self.accounts.items() if acct.budget}
        self.commands: dict[str, Command] = {}
        self.published: dict[str, list[str]] = {}  # message_id -> correlation ids
        self.replies: dict[str, list[bytes]] = {}  # correlation_id -> bodies
        self.outstanding: set[str] = set()  # correlation ids still without a reply
        self.late: list[tuple[float, Command]] = []
        self.mismatches: list[str] = []
        self.latencies: list[float] = []
        self.duplicates = 0
        self.late_duplicates = 0
        self.issue_seconds = 0.0
        self.seconds = 0.0
        self.stalled = False
        self._seq = 0

    # --- the model --------------------------------------------------------------------

    def _choose(self, acct: Account) -> str:
        table = PENDING_KINDS if acct.pending else IDLE_KINDS
        # get and decide_final need an earlier request (final, for decide_final: idle only)
        kinds = [
            (k, w) for k, w in table if k not in ("get", "decide_final") or acct.last is not None
        ]
        return self.rng.choices([k for k, _ in kinds], [w for _, w in kinds])[0]

    def _command(self, acct: Account) -> Command:
        kind = self._choose(acct)
        self._seq += 1
        mid = f"{acct.account_id}.{self._seq}.{kind}"
        a = acct.account_id
        owner, admin, agent = acct.user("owner"), acct.user("admin"), acct.user("agent")
        submit: dict[str, Any] = {"account_id": a, "changes": SEATS, "note": f"chaos {mid}"}
        if kind == "submit":
            return Command(mid, a, kind, "request.submit", {**submit, "actor_id": admin}, "ok")
        if kind == "submit_again":
            body = {**submit, "actor_id": admin}
            return Command(mid, a, kind, "request.submit", body, "request_pending")
        if kind == "submit_agent":
            body = {**submit, "actor_id": agent}
            return Command(mid, a, kind, "request.submit", body, "forbidden")
        if kind == "preview":
            body = {"account_id": a, "actor_id": admin, "changes": SEATS}
            return Command(mid, a, kind, "request.preview", body, "ok")
        if kind in ("approve", "reject", "decide_admin", "decide_final"):
            rid = acct.pending if kind != "decide_final" else acct.last
            body = {
                "request_id": rid,
                "actor_id": admin if kind == "decide_admin" else owner,
                "decision": "reject" if kind == "reject" else "approve",
                "comment": f"chaos {mid}",
            }
            expect = {"decide_admin": "forbidden", "decide_final": "invalid_state"}.get(kind, "ok")
            return Command(mid, a, kind, "request.decide", body, expect, rid)
        if kind in ("withdraw", "cancel"):
            actor = admin if kind == "withdraw" else owner
            body = {"request_id": acct.pending, "actor_id": actor, "reason": f"chaos {mid}"}
            return Command(mid, a, kind, "request.cancel", body, "ok", acct.pending)
        if kind == "get":
            body = {"request_id": acct.last, "actor_id": owner}
            return Command(mid, a, kind, "request.get", body, "ok", acct.last)
        if kind == "list":
            body = {"account_id": a, "actor_id": agent}
            return Command(mid, a, kind, "request.list", body, "ok")
        if kind == "rename":
            body = {
                "account_id": a,
                "name": f"{a.title()} Inc. #{acct.renames + 1}",
                "type": "sales_assisted",
                "allows_subscription_changes": True,
            }
            return Command(mid, a, kind, "account.upsert", body, "ok")
        if kind == "member":
            body = {
                "account_id": a,
                "user_id": admin,
                "name": f"Admin of {a} ({self._seq})",
                "email": f"{admin}@{a}.example",
                "role": "admin",
                "locale": "it" if acct.admin_locale == "en" else "en",
            }
            return Command(mid, a, kind, "member.upsert", body, "ok")
        raise AssertionError(kind)

    def _apply(self, acct: Account, cmd: Command, reply: dict[str, Any]) -> str | None:
        """Check a first reply against the model, then advance the model; or say why not."""
        if cmd.expect == "ok":
            if not reply.get("ok"):
                error = reply.get("error") or {}
                return f"expected ok, got {error.get('code')}: {error.get('message')}"
        elif reply.get("ok") or (reply.get("error") or {}).get("code") != cmd.expect:
            return f"expected {cmd.expect}, got {orjson.dumps(reply)[:300]!r}"
        if cmd.expect != "ok":
            if cmd.kind == "submit_again" and acct.pending not in reply["error"]["message"]:
                return f"the R11 refusal does not name the pending request {acct.pending}"
            return None
        result = reply["result"]
        request = result.get("request") or {}
        if cmd.kind == "submit":
            if request.get("state") != "pending" or request.get("requester_id") != acct.user(
                "admin"
            ):
                return f"submit answered {request.get('state')} by {request.get('requester_id')}"
            rid = request["request_id"]
            acct.pending = acct.last = rid
            acct.states[rid] = "pending"
        elif cmd.kind in FINAL_OF:
            want = FINAL_OF[cmd.kind]
            if request.get("request_id") != cmd.request_id or request.get("state") != want:
                return f"{cmd.kind} answered {request.get('request_id')} {request.get('state')}"
            assert cmd.request_id is not None
            acct.states[cmd.request_id] = want
            acct.ended_by[cmd.request_id] = cmd.kind
            acct.pending = None
            if cmd.kind == "approve":
                acct.seats += 1
        elif cmd.kind == "get":
            assert cmd.request_id is not None
            if request.get("state") != acct.states[cmd.request_id]:
                return f"get says {request.get('state')}, model {acct.states[cmd.request_id]}"
        elif cmd.kind == "list":
            if len(result.get("requests", [])) != len(acct.states):
                return f"list has {len(result.get('requests', []))}, model {len(acct.states)}"
        elif cmd.kind == "rename":
            acct.renames += 1
            acct.name = cmd.body["name"]
        elif cmd.kind == "member":
            acct.admin_locale = cmd.body["locale"]
        return None

    # --- the loop ---------------------------------------------------------------------

    def _publish(self, cmd: Command, correlation_id: str) -> None:
        self.published.setdefault(cmd.message_id, []).append(correlation_id)
        self.outstanding.add(correlation_id)
        self.client.publish(
            cmd.routing_key,
            orjson.dumps(cmd.body),
            message_id=cmd.message_id,
            correlation_id=correlation_id,
        )

    def _issue(self, account_id: str) -> None:
        acct = self.accounts[account_id]
        self.ready.discard(account_id)
        cmd = self._command(acct)
        acct.budget -= 1
        self.to_issue -= 1
        acct.in_flight = cmd
        self.commands[cmd.message_id] = cmd
        cmd.sent_at = time.monotonic()
        self._publish(cmd, cmd.message_id)
        if cmd.effect and self.rng.random() < self.dup_rate:
            self.duplicates += 1
            self._publish(cmd, f"{cmd.message_id}~dup")

    def _on_reply(self, reply: Reply) -> None:
        self.replies.setdefault(reply.correlation_id, []).append(reply.body)
        self.outstanding.discard(reply.correlation_id)
        message_id = reply.correlation_id.split("~", 1)[0]
        cmd = self.commands.get(message_id)
        if cmd is None or reply.correlation_id != message_id:
            return  # a duplicate's reply: compared with the others at the end
        if len(self.replies[message_id]) > 1:
            return  # the same reply again (a redelivery): compared at the end
        acct = self.accounts[cmd.account_id]
        self.latencies.append(reply.at - cmd.sent_at)
        problem = self._apply(acct, cmd, reply.json())
        acct.in_flight = None
        if problem is not None:
            acct.diverged = f"{cmd.message_id} ({cmd.routing_key}): {problem}"
            self.mismatches.append(acct.diverged)
            self.to_issue -= acct.budget
            acct.budget = 0
            return
        if cmd.effect and self.rng.random() < self.late_rate:
            self.late.append((time.monotonic() + self.rng.uniform(0.2, 2.0), cmd))
        if acct.budget:
            self.ready.add(cmd.account_id)

    def run(self, faults: Sequence[Fault], settle: float) -> None:
        """Issue everything at the paced rate while ticking the faults, then wait up to
        ``settle`` seconds for the last replies."""
        start = last = progress = time.monotonic()
        tokens = 1.0
        issuing = True
        ended = start
        while True:
            now = time.monotonic()
            if issuing and self.outstanding and now - progress > STALL:
                self.stalled = True  # replies stopped coming: stop, and let the checks say
                self.to_issue = 0
            if issuing:
                for fault in faults:
                    fault.tick(now - start)
                tokens = min(tokens + (now - last) * self.rate, max(5.0, self.rate / 5))
                while tokens >= 1 and self.ready:
                    self._issue(self.rng.choice(sorted(self.ready)))
                    tokens -= 1
                if self.to_issue <= 0:
                    issuing = False
                    ended = time.monotonic()
                    self.issue_seconds = ended - start
                    for fault in faults:
                        fault.finish()
            last = now
            due = [item for item in self.late if item[0] <= now]
            for item in due:
                self.late.remove(item)
                self.late_duplicates += 1
                self._publish(item[1], f"{item[1].message_id}~late")
            self.client.pump(0.01)
            arrivals = self.client.take_arrivals()
            for reply in arrivals:
                self._on_reply(reply)
            if arrivals or not self.outstanding:
                progress = time.monotonic()
            if not issuing and not self.outstanding and not self.late:
                break
            if not issuing and time.monotonic() - ended > settle:
                break
        self.seconds = time.monotonic() - start

    # --- what the checks need -----------------------------------------------------------

    def expected_keys(self) -> set[str]:
        return {f"id:{c.message_id}" for c in self.commands.values() if c.effect}

    def expected_refusals(self) -> dict[str, str]:
        return {f"id:{c.message_id}": c.expect for c in self.commands.values() if c.expect != "ok"}

    def missing_replies(self) -> list[str]:
        return sorted(
            corr for corrs in self.published.values() for corr in corrs if corr not in self.replies
        )

    def inconsistent_replies(self) -> list[str]:
        """Message ids whose copies (racing, late, redelivered) were not all answered alike."""
        bad = []
        for message_id, corrs in self.published.items():
            bodies = {body for corr in corrs for body in self.replies.get(corr, [])}
            if len(bodies) > 1:
                bad.append(message_id)
        return bad
