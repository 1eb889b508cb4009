"""Stateful property test: random command sequences keep the lifecycle's invariants.

A Hypothesis ``RuleBasedStateMachine`` drives submits, decisions, cancellations,
expiries, account and member upserts (eligibility flips voiding requests, R6;
subscriptions replaced under a pending request, R12), redeliveries with the same
``message_id`` and resends without one (body-hash dedupe window) through
``CommandService.handle`` against a real database (SQLite and PostgreSQL). A small
model of the directory, the accounts, their subscriptions and the requests predicts
each outcome and its error code; after every step the tables, read directly with
SQLAlchemy Core, must agree with the model and with the rules:

1. at most one ``pending`` request per account (R11);
2. a request in a final state never changes again (R13);
3. the history is append-only and chains up to the request's state (R15);
4. the subscription changes only on an approval or an ``account.upsert`` giving one (R12);
5. every accepted transition adds exactly one event of its type, a refusal none;
6. a refused command adds one audit row and changes nothing else (R15);
7. who succeeded was allowed to: submit by an admin (R1), decide by a decider (R2);
8. two-person approval (R23), with thresholds set, raised, lowered and removed at random: a
   request is never approved with fewer distinct approvers than the threshold in force at
   its last approval asks for, the same decider never counts twice, a first approval of two
   stays pending (``request.approval_recorded``), and a threshold change moves no request.

``SUBREQ_STATEFUL_SCALE=N`` runs N times the examples, for a longer hunt.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Connection, delete, func, select

from tests.contract import ERROR_CODES
from workflow.app.service import CommandService, Outcome
from workflow.domain.catalog import Catalog, load_catalog
from workflow.persistence import tables as t
from workflow.persistence.database import Database

ACCOUNTS = ("acct-1", "acct-2", "acct-3")
SLOTS = {
    "owner": "owner",
    "billing": "billing_admin",
    "admin-a": "admin",
    "admin-b": "admin",
    "agent": "agent",
}
ROLES = ("owner", "billing_admin", "admin", "agent")
DECIDERS = frozenset({"owner", "billing_admin"})
USERS = (*(f"{a}-{s}" for a in ACCOUNTS for s in SLOTS), "stranger")

KINDS = {
    "online": ("sales_assisted", True),  # eligible (R5)
    "managed": ("sales_assisted", False),
    "self_service": ("self_service", True),
    "self_service_locked": ("self_service", False),
}
ELIGIBLE = KINDS["online"]

SUBSCRIPTIONS: dict[str, dict[str, Any]] = {
    "usd": {
        "currency": "USD",
        "billing_cycle": "monthly",
        "products": [{"product": "support", "plan": "professional", "seats": 10}],
    },
    "eur": {
        "currency": "EUR",
        "billing_cycle": "annual",
        "products": [
            {"product": "suite", "plan": "growth", "seats": 5},
            {"product": "guide", "plan": "professional", "seats": 7},
        ],
    },
    "gbp": {
        "currency": "GBP",
        "billing_cycle": "monthly",
        "products": [
            {"product": "support", "plan": "enterprise_plus", "seats": 3},
            {"product": "collaboration", "plan": "growth", "seats": 0},
        ],
    },
    "empty": {"currency": "USD", "billing_cycle": "annual", "products": []},
}
BAD_SUBSCRIPTION = {
    "currency": "USD",
    "billing_cycle": "monthly",
    "products": [{"product": "teleporter", "plan": "team", "seats": 1}],
}
INITIAL = {"acct-1": ("online", "usd"), "acct-2": ("online", "eur"), "acct-3": ("managed", "gbp")}

OUT_OF_SCOPE = (
    "remove_seats",
    "remove_product",
    "downgrade_plan",
    "change_billing_cycle",
    "change_payment_method",
    "manage_invoice",
    "cancel_account",
)
REQUEST_EVENTS = (
    "request.submitted",
    "request.approval_recorded",
    "request.approved",
    "request.rejected",
    "request.cancelled",
    "request.expired",
    "request.voided",
    "subscription.changed",
)
EVENT_OF_STATE = {
    "pending": "request.submitted",
    "approved": "request.approved",
    "rejected": "request.rejected",
    "cancelled": "request.cancelled",
    "expired": "request.expired",
    "voided": "request.voided",
}
THRESHOLDS = (None, "0.00", "500.00", "2000.00")
"""``approval.second_above`` values (R23) around what the drawn requests cost."""
FINAL_STATES = frozenset({"approved", "rejected", "cancelled", "expired", "voided"})
BODY_DEDUPED = frozenset({"request.submit", "request.decide", "request.cancel"})
DEDUPE_WINDOW = timedelta(minutes=10)  # CommandService's default
PRECEDENCE = list(ERROR_CODES)


def _leading(codes: set[str]) -> str:
    return min(codes, key=PRECEDENCE.index)


def body_hash(routing_key: str, raw: bytes) -> str:
    """The contract's key for a request.* command without message_id."""
    return "sha256:" + hashlib.sha256(routing_key.encode() + b"\n" + raw).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


Line = tuple[str, str, int]  # product, plan, seats


@dataclass
class Sub:
    currency: str
    billing_cycle: str
    products: list[Line]

    @classmethod
    def of(cls, body: dict[str, Any]) -> Sub:
        return cls(
            body["currency"],
            body["billing_cycle"],
            [(p["product"], p["plan"], p["seats"]) for p in body["products"]],
        )


@dataclass
class ModelRequest:
    account_id: str
    requester_id: str
    changes: list[dict[str, Any]]
    state: str = "pending"
    total: Decimal = Decimal(0)
    currency: str = ""
    approvers: list[str] = field(default_factory=list)
    """Who approved it, in order (R23)."""
    needed: int = 1
    """The approvals the threshold in force at its approval asked for."""


@dataclass(frozen=True)
class ModelThreshold:
    second_above: Decimal
    currency: str

    def needed(self, req: ModelRequest) -> int:
        """The model's own reading of R23."""
        if self.currency != req.currency:
            return 2
        return 2 if req.total > self.second_above else 1


@dataclass
class Sent:
    routing_key: str
    body: bytes
    message_id: str
    reply: bytes


@dataclass
class Snapshot:
    counts: dict[str, int]
    events: Counter[str]
    states: dict[str, str]
    subscriptions: dict[str, Sub]
    accounts: dict[str, tuple[Any, ...]]
    members: dict[tuple[str, str], str]
    max_ids: dict[str, int] = field(default_factory=dict)

    def same_except(self, other: Snapshot, *tables: str) -> bool:
        """Equal, apart from the row counts of ``tables``."""
        counts = {k: v for k, v in self.counts.items() if k not in tables}
        other_counts = {k: v for k, v in other.counts.items() if k not in tables}
        return (
            counts == other_counts
            and self.events == other.events
            and self.states == other.states
            and self.subscriptions == other.subscriptions
            and self.accounts == other.accounts
            and self.members == other.members
        )


@dataclass
class Step:
    """One command handled: its outcome, the tables around it, and its idempotency key."""

    outcome: Outcome
    before: Snapshot
    after: Snapshot
    key: str
    stored: int = 1  # rows it adds to processed_commands
    duplicate: bool = False


def _read_subscriptions(conn: Connection) -> dict[str, Sub]:
    subs = {
        r.account_id: Sub(r.currency, r.billing_cycle, []) for r in conn.execute(select(t.accounts))
    }
    rows = conn.execute(
        select(t.subscription_products).order_by(
            t.subscription_products.c.account_id, t.subscription_products.c.position
        )
    )
    for r in rows:
        subs[r.account_id].products.append((r.product, r.plan, r.seats))
    return subs


def snapshot(db: Database) -> Snapshot:
    with db.engine.connect() as conn:
        counts = {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in t.metadata.sorted_tables
        }
        events: Counter[str] = Counter(
            dict(
                conn.execute(select(t.outbox.c.type, func.count()).group_by(t.outbox.c.type)).all()
            )
        )
        states = dict(conn.execute(select(t.requests.c.request_id, t.requests.c.state)).all())
        accounts = {
            r.account_id: (
                r.type,
                r.allows_subscription_changes,
                r.approval_second_above,
                r.approval_currency,
            )
            for r in conn.execute(select(t.accounts))
        }
        members = {
            (r.account_id, r.user_id): r.role
            for r in conn.execute(select(t.members).where(t.members.c.removed_at.is_(None)))
        }
        max_ids = {
            table.name: conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
            for table in (t.outbox, t.request_transitions, t.audit_log)
        }
        return Snapshot(
            counts,
            events,
            states,
            _read_subscriptions(conn),
            accounts,
            members,
            max_ids,
        )


def make_machine(db: Database, catalog: Catalog | None = None) -> type[RuleBasedStateMachine]:
    """The state machine class for ``db``; each example starts from an empty database."""
    facts = (catalog or load_catalog()).facts()
    plans: dict[str, tuple[str, ...]] = dict(facts.plans)
    addable = frozenset(facts.addable)
    products = sorted(plans)
    all_plans = sorted({p for ps in plans.values() for p in ps})

    # --- the model's own reading of R7-R9 and of applying a change ---------------

    def change_codes(changes: list[dict[str, Any]], sub: Sub) -> set[str]:
        owned = {p: plan for p, plan, _ in sub.products}
        codes: set[str] = set()
        for c in changes:
            kind = c["type"]
            if kind in OUT_OF_SCOPE:
                codes.add("out_of_scope")
                continue
            product = c["product"]
            if product not in plans:
                codes.add("invalid_change")
                continue
            ladder = plans[product]
            if kind == "add_seats":
                bad = product not in owned or c["quantity"] < 1
            elif kind == "add_product":
                bad = (
                    product in owned
                    or product not in addable
                    or c["plan"] not in ladder
                    or (c.get("seats") is not None and c["seats"] < 1)
                )
            else:  # upgrade_plan
                bad = (
                    product not in owned
                    or c["plan"] not in ladder
                    or owned[product] not in ladder
                    or ladder.index(c["plan"]) <= ladder.index(owned[product])
                )
            if bad:
                codes.add("invalid_change")
        grantable = [c for c in changes if c["type"] not in OUT_OF_SCOPE]
        for a, b in itertools.combinations(grantable, 2):
            # Only add_seats + upgrade_plan may meet on one product.
            if a["product"] == b["product"] and {a["type"], b["type"]} != {
                "add_seats",
                "upgrade_plan",
            }:
                codes.add("invalid_change")
        return codes

    def applied(sub: Sub, changes: list[dict[str, Any]]) -> Sub:
        """The items in the order that makes a price independent of the request's order
        (R7, R9 clarified): added seats, then upgrades, then added products."""
        lines = list(sub.products)
        rank = {"add_seats": 0, "upgrade_plan": 1, "add_product": 2}
        for c in sorted(changes, key=lambda c: rank[c["type"]]):
            index = next((i for i, line in enumerate(lines) if line[0] == c["product"]), None)
            if c["type"] == "add_seats":
                assert index is not None
                p, plan, seats = lines[index]
                lines[index] = (p, plan, seats + c["quantity"])
            elif c["type"] == "upgrade_plan":
                assert index is not None
                p, _, seats = lines[index]
                lines[index] = (p, c["plan"], seats)
            else:
                seats = c.get("seats")
                if seats is None:
                    seats = max([1, *(line[2] for line in lines)])
                lines.append((c["product"], c["plan"], seats))
        return Sub(sub.currency, sub.billing_cycle, lines)

    def valid_items(sub: Sub) -> list[st.SearchStrategy[dict[str, Any]]]:
        owned = {p for p, _, _ in sub.products}
        options: list[st.SearchStrategy[dict[str, Any]]] = []
        for p, plan, _ in sub.products:
            options.append(
                st.integers(1, 20).map(
                    lambda q, p=p: {"type": "add_seats", "product": p, "quantity": q}
                )
            )
            ladder = plans.get(p, ())
            higher = ladder[ladder.index(plan) + 1 :] if plan in ladder else ()
            if higher:
                options.append(
                    st.sampled_from(higher).map(
                        lambda new, p=p: {"type": "upgrade_plan", "product": p, "plan": new}
                    )
                )
        for p in sorted(addable - owned):
            options.append(
                st.builds(
                    lambda plan, seats, p=p: {
                        "type": "add_product",
                        "product": p,
                        "plan": plan,
                        **({} if seats is None else {"seats": seats}),
                    },
                    st.sampled_from(plans[p]),
                    st.none() | st.integers(1, 20),
                )
            )
        return options

    any_product = st.sampled_from([*products, "teleporter"])
    any_item: st.SearchStrategy[dict[str, Any]] = st.one_of(
        st.builds(
            lambda p, q: {"type": "add_seats", "product": p, "quantity": q},
            any_product,
            st.integers(-2, 20),
        ),
        st.builds(
            lambda p, plan, seats: {
                "type": "add_product",
                "product": p,
                "plan": plan,
                **({} if seats is None else {"seats": seats}),
            },
            any_product,
            st.sampled_from([*all_plans, "platinum"]),
            st.none() | st.integers(-1, 20),
        ),
        st.builds(
            lambda p, plan: {"type": "upgrade_plan", "product": p, "plan": plan},
            any_product,
            st.sampled_from([*all_plans, "platinum"]),
        ),
        st.sampled_from(OUT_OF_SCOPE).map(lambda kind: {"type": kind}),
    )

    class LifecycleMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.clock = Clock()
            self.service = CommandService(db, load_catalog(), clock=self.clock)
            self.ids = itertools.count(1)
            self.ready = False
            self.kinds: dict[str, tuple[str, bool]] = {}
            self.roles: dict[str, dict[str, str]] = {a: {} for a in ACCOUNTS}
            self.removed: dict[str, set[str]] = {a: set() for a in ACCOUNTS}
            self.subs: dict[str, Sub] = {}
            self.thresholds: dict[str, ModelThreshold | None] = dict.fromkeys(ACCOUNTS)
            self.requests: dict[str, ModelRequest] = {}
            self.sent: list[Sent] = []
            self.bodies: list[tuple[str, dict[str, Any]]] = []
            self.hashed: dict[str, tuple[datetime, bytes]] = {}
            self.seen_transitions: dict[int, tuple[Any, ...]] = {}
            self.last_state: dict[str, str] = {}

        # --- plumbing -----------------------------------------------------------

        @initialize(
            thresholds=st.lists(
                st.sampled_from(THRESHOLDS), min_size=len(ACCOUNTS), max_size=len(ACCOUNTS)
            )
        )
        def setup(self, thresholds: list[str | None]) -> None:
            with db.engine.begin() as conn:
                for table in reversed(t.metadata.sorted_tables):
                    conn.execute(delete(table))
            for (account, (kind, sub)), second_above in zip(
                INITIAL.items(), thresholds, strict=True
            ):
                body = self._account_body(account, kind, SUBSCRIPTIONS[sub])
                if second_above is not None:
                    body["approval"] = {"second_above": second_above}
                outcome = self.service.handle("account.upsert", body)
                assert outcome.json()["ok"], outcome.json()
                self.kinds[account] = KINDS[kind]
                self.subs[account] = Sub.of(SUBSCRIPTIONS[sub])
                if second_above is not None:
                    currency = SUBSCRIPTIONS[sub]["currency"]
                    self.thresholds[account] = ModelThreshold(Decimal(second_above), currency)
                for slot, role in SLOTS.items():
                    user = f"{account}-{slot}"
                    outcome = self.service.handle(
                        "member.upsert", self._member_body(account, user, role)
                    )
                    assert outcome.json()["ok"], outcome.json()
                    self.roles[account][user] = role
            self.ready = True

        @staticmethod
        def _account_body(
            account: str, kind: str, subscription: dict[str, Any] | None
        ) -> dict[str, Any]:
            type_, allows = KINDS[kind]
            body: dict[str, Any] = {
                "account_id": account,
                "name": f"Account {account}",
                "type": type_,
                "allows_subscription_changes": allows,
            }
            if subscription is not None:
                body["subscription"] = subscription
            return body

        @staticmethod
        def _member_body(account: str, user: str, role: str) -> dict[str, Any]:
            return {
                "account_id": account,
                "user_id": user,
                "name": user.replace("-", " ").title(),
                "email": f"{user}@example.com",
                "role": role,
                "locale": "it" if user.endswith("agent") else "en",
            }

        def _pending_of(self, account: str) -> str | None:
            found = [
                rid
                for rid, r in self.requests.items()
                if r.account_id == account and r.state == "pending"
            ]
            assert len(found) <= 1
            return found[0] if found else None

        def _same_submit_still_pending(self, routing_key: str, reply: bytes) -> bool:
            """Body-hash dedupe of a submit holds only while the request it created is
            pending (contract, second edition); a refused submit is not deduplicated."""
            if routing_key != "request.submit":
                return True
            answer = orjson.loads(reply)
            if not answer["ok"]:
                return False
            return self.requests[answer["result"]["request"]["request_id"]].state == "pending"

        def _send(self, routing_key: str, body: dict[str, Any], *, with_id: bool = True) -> Step:
            """Handle one command; a redelivery without ``message_id`` inside the dedupe
            window is checked here and comes back as ``Step.duplicate``."""
            self.clock.advance(minutes=3)
            raw = orjson.dumps(body)
            message_id = f"msg-{next(self.ids)}" if with_id else None
            key = f"id:{message_id}" if with_id else body_hash(routing_key, raw)
            earlier = self.hashed.get(key)
            before = snapshot(db)
            outcome = self.service.handle(routing_key, raw, message_id)
            after = snapshot(db)
            label = f"{routing_key} {body.get('decision', '')}".strip()
            if (
                earlier is not None
                and self.clock.now - earlier[0] <= DEDUPE_WINDOW
                and self._same_submit_still_pending(routing_key, earlier[1])
            ):
                # The same body without message_id within the window: the first reply again.
                event(f"{label} without message_id: duplicate")
                assert outcome.duplicate, (routing_key, body)
                assert outcome.reply == earlier[1]
                assert after.counts == before.counts
                assert after.max_ids == before.max_ids
                assert after.same_except(before)
                return Step(outcome, before, after, key, duplicate=True)
            assert not outcome.duplicate, (routing_key, body, earlier)
            reply = outcome.json()
            suffix = "" if with_id else " without message_id"
            event(f"{label}{suffix}: {'ok' if reply['ok'] else reply['error']['code']}")
            if outcome.invalid:
                return Step(outcome, before, after, key, stored=0)
            if message_id is not None:
                self.sent.append(Sent(routing_key, raw, message_id, outcome.reply))
            else:
                self.hashed[key] = (self.clock.now, outcome.reply)
            if routing_key in BODY_DEDUPED:
                self.bodies.append((routing_key, body))
            # A stale body-hash reply is replaced, not added to.
            return Step(outcome, before, after, key, stored=0 if earlier is not None else 1)

        def _new_rows(self, table: t.Table, before: Snapshot) -> list[Any]:
            with db.engine.connect() as conn:
                return list(
                    conn.execute(
                        select(table)
                        .where(table.c.id > before.max_ids[table.name])
                        .order_by(table.c.id)
                    )
                )

        def _check_refused(self, step: Step, routing_key: str, expected: set[str]) -> None:
            """Invariant 6: one audit row, no other change; and the code the model expects."""
            before, after = step.before, step.after
            reply = step.outcome.json()
            assert reply["ok"] is False, (routing_key, reply)
            assert reply["error"]["code"] == _leading(expected), (expected, reply)
            assert after.counts["audit_log"] == before.counts["audit_log"] + 1
            assert (
                after.counts["processed_commands"]
                == before.counts["processed_commands"] + step.stored
            )
            assert after.same_except(before, "audit_log", "processed_commands")
            (audit,) = self._new_rows(t.audit_log, before)
            assert audit.command == routing_key
            assert audit.code == reply["error"]["code"]
            assert audit.idempotency_key == step.key
            assert audit.at == self.clock.now

        def _check_accepted(
            self,
            step: Step,
            *,
            events: Counter[str],
            transitions: list[tuple[str, str | None, str, str, str | None]],
            account: str | None = None,
        ) -> None:
            """Invariant 5: exactly the transition's events; no audit row; the history steps."""
            before, after = step.before, step.after
            assert step.outcome.json()["ok"] is True, step.outcome.json()
            assert after.counts["audit_log"] == before.counts["audit_log"]
            assert (
                after.counts["processed_commands"]
                == before.counts["processed_commands"] + step.stored
            )
            self._check_effects(before, after, events, transitions, account)

        def _check_effects(
            self,
            before: Snapshot,
            after: Snapshot,
            events: Counter[str],
            transitions: list[tuple[str, str | None, str, str, str | None]],
            account: str | None,
        ) -> None:
            added = after.events - before.events
            assert after.events - added == before.events, "an outbox row disappeared"
            assert {k: added[k] for k in REQUEST_EVENTS if added[k]} == dict(events), (
                events,
                added,
            )
            assert set(added) <= set(REQUEST_EVENTS) | {"notification.requested"}, added
            moved = {rid: to for rid, _, to, _, _ in transitions}
            for row in self._new_rows(t.outbox, before):
                assert row.created_at == self.clock.now
                if account is not None:
                    assert row.account_id == account
                payload = orjson.loads(row.payload)
                assert payload["type"] == row.type
                assert payload.get("request_id") == row.request_id
                if row.type.startswith("request."):
                    # The event names the transition and carries the request as it now is.
                    assert row.request_id in moved, (row.type, moved)
                    state = moved[row.request_id]
                    if row.type == "request.approval_recorded":  # R23: stays pending
                        assert state == "pending"
                        approver = payload["data"]["approver_id"]
                        approvals = payload["data"]["request"]["approvals"]
                        assert approvals[-1]["actor_id"] == approver
                    else:
                        assert row.type == EVENT_OF_STATE[state]
                    assert payload["data"]["request"]["state"] == state
                    assert payload["data"]["request"]["request_id"] == row.request_id
            steps = [
                (r.request_id, r.from_state, r.to_state, r.trigger, r.actor_id)
                for r in self._new_rows(t.request_transitions, before)
            ]
            assert steps == transitions

        def _admins(self, account: str) -> list[str]:
            return sorted(u for u, r in self.roles[account].items() if r == "admin")

        def _has_admins(self) -> bool:
            return any(self._admins(a) for a in ACCOUNTS)

        def _has_pending(self) -> bool:
            return any(r.state == "pending" for r in self.requests.values())

        def _pick_pending(self, data: st.DataObject) -> str:
            pending = [r for r, m in self.requests.items() if m.state == "pending"]
            return data.draw(st.sampled_from(pending), label="request_id")

        def _pick_request(self, data: st.DataObject) -> str:
            pending = [r for r, m in self.requests.items() if m.state == "pending"]
            every = list(self.requests)  # creation order: uuid4 ids differ on replay
            if pending:
                return data.draw(
                    st.sampled_from(pending) | st.sampled_from(every), label="request_id"
                )
            return data.draw(st.sampled_from(every), label="request_id")

        def _pick_actor(self, data: st.DataObject, account: str) -> str:
            """Mostly a decider, else a member of the account, else anyone (R2, R4)."""
            members = sorted(self.roles[account])
            deciders = [u for u in members if self.roles[account][u] in DECIDERS]
            pool = st.sampled_from(USERS)
            if members:
                pool = st.sampled_from(members) | pool
            if deciders:
                pool = st.sampled_from(deciders) | pool
            return data.draw(pool, label="actor")

        def _draw_changes(self, data: st.DataObject, account: str) -> list[dict[str, Any]]:
            valid = valid_items(self.subs[account])
            one_valid = st.one_of(valid) if valid else any_item
            return data.draw(
                st.lists(one_valid, min_size=1, max_size=3)
                | st.lists(one_valid | any_item, min_size=1, max_size=3),
                label="changes",
            )

        # --- rules: requests --------------------------------------------------------

        @rule(minutes=st.integers(1, 60 * 24 * 40))
        def time_passes(self, minutes: int) -> None:
            self.clock.advance(minutes=minutes)

        @precondition(_has_admins)
        @rule(data=st.data(), note=st.none() | st.just("for the new team"))
        def submit_as_admin(self, data: st.DataObject, note: str | None) -> None:
            """The likely-accepted submit: an admin of the account (R1)."""
            account = data.draw(
                st.sampled_from([a for a in ACCOUNTS if self._admins(a)]), label="account"
            )
            actor = data.draw(st.sampled_from(self._admins(account)), label="actor")
            self._submit(account, actor, self._draw_changes(data, account), note)

        @rule(
            data=st.data(),
            account=st.sampled_from(ACCOUNTS),
            note=st.none() | st.just("for the new team"),
        )
        def submit(self, data: st.DataObject, account: str, note: str | None) -> None:
            """Anyone, of this account, another one or none, submits."""
            admins = self._admins(account)
            actor = data.draw(
                (st.sampled_from(admins) | st.sampled_from(USERS))
                if admins
                else st.sampled_from(USERS),
                label="actor",
            )
            self._submit(account, actor, self._draw_changes(data, account), note)

        def _submit(
            self,
            account: str,
            actor: str,
            changes: list[dict[str, Any]],
            note: str | None,
            *,
            with_id: bool = True,
        ) -> None:
            body: dict[str, Any] = {"account_id": account, "actor_id": actor, "changes": changes}
            if note is not None:
                body["note"] = note
            role = self.roles[account].get(actor)
            expected: set[str] = set()
            if role is None:
                # R3: the directory remembers a removed member, who may no longer act.
                removed = actor in self.removed[account]
                expected.add("forbidden" if removed else "unknown_member")
            else:
                if role != "admin":
                    expected.add("forbidden")
                if self.kinds[account] != ELIGIBLE:
                    expected.add("not_eligible")
                if self._pending_of(account) is not None:
                    expected.add("request_pending")
                expected |= change_codes(changes, self.subs[account])

            step = self._send("request.submit", body, with_id=with_id)
            if step.duplicate:
                return
            if expected:
                self._check_refused(step, "request.submit", expected)
                return
            view = step.outcome.json()["result"]["request"]
            rid = view["request_id"]
            assert rid not in self.requests
            assert view["state"] == "pending"
            self._check_accepted(
                step,
                events=Counter({"request.submitted": 1}),
                transitions=[(rid, None, "pending", "submit", actor)],
                account=account,
            )
            # Invariant 7 (R1), read from the directory table itself.
            assert step.after.members[(account, actor)] == "admin"
            summary = view["summary"]
            self.requests[rid] = ModelRequest(
                account,
                actor,
                changes,
                total=Decimal(summary["total"]),
                currency=summary["currency"],
            )

        @precondition(_has_pending)
        @rule(
            data=st.data(),
            decision=st.sampled_from(["approve", "reject"]),
            comment=st.sampled_from([None, "not this quarter", "ok", "   "]),
        )
        def decide_pending(self, data: st.DataObject, decision: str, comment: str | None) -> None:
            """The likely-accepted decision: a pending request, mostly by a decider (R2)."""
            rid = self._pick_pending(data)
            actor = self._pick_actor(data, self.requests[rid].account_id)
            self._decide(rid, actor, decision, comment)

        @precondition(_has_pending)
        @rule(data=st.data())
        def approve_pending(self, data: st.DataObject) -> None:
            """R23's paths: a decider of the account approves a pending request (the first
            of two, the second, or the same decider again), maybe another one right after."""
            rid = self._pick_pending(data)
            account = self.requests[rid].account_id
            deciders = sorted(u for u, r in self.roles[account].items() if r in DECIDERS)
            if not deciders:
                return
            # Mostly one who has not approved it yet, so that second approvals happen.
            fresh = [u for u in deciders if u not in self.requests[rid].approvers]
            pool = st.sampled_from(deciders)
            if fresh:
                pool = st.sampled_from(fresh) | pool
            actor = data.draw(pool, label="decider")
            self._decide(rid, actor, "approve", None)
            if data.draw(st.booleans(), label="and another decider at once"):
                others = [u for u in deciders if u not in self.requests[rid].approvers]
                if others and self.requests[rid].state == "pending":
                    self._decide(rid, data.draw(st.sampled_from(others)), "approve", "second")

        @precondition(lambda self: self.requests)
        @rule(
            data=st.data(),
            decision=st.sampled_from(["approve", "reject"]),
            comment=st.sampled_from([None, "not this quarter", "   "]),
        )
        def decide(self, data: st.DataObject, decision: str, comment: str | None) -> None:
            """Any request, any actor."""
            rid = self._pick_request(data)
            actor = data.draw(st.sampled_from(USERS), label="actor")
            self._decide(rid, actor, decision, comment)

        def _decide(
            self, rid: str, actor: str, decision: str, comment: str | None, *, with_id: bool = True
        ) -> None:
            req = self.requests[rid]
            body: dict[str, Any] = {"request_id": rid, "actor_id": actor, "decision": decision}
            if comment is not None:
                body["comment"] = comment
            role = self.roles[req.account_id].get(actor)
            expected: set[str] = set()
            if req.state != "pending":
                expected.add("invalid_state")
            elif role not in DECIDERS:
                expected.add("forbidden")
            elif decision == "approve" and actor in req.approvers:
                expected.add("forbidden")  # R23: nobody approves twice
            elif decision == "approve":
                expected |= change_codes(req.changes, self.subs[req.account_id])

            step = self._send("request.decide", body, with_id=with_id)
            before, after = step.before, step.after
            if decision == "reject" and not (comment or "").strip():
                # R19: judged from the message alone, before any lookup; never stored.
                assert step.outcome.invalid
                assert step.outcome.json()["error"]["code"] == "invalid_message"
                assert after.counts["audit_log"] == before.counts["audit_log"] + 1
                assert after.same_except(before, "audit_log")
                return
            if step.duplicate:
                return
            if expected:
                self._check_refused(step, "request.decide", expected)
                if expected == {"forbidden"} and actor in req.approvers and decision == "approve":
                    [detail] = step.outcome.json()["error"]["details"]
                    assert detail["rule"] == "R23"
                return
            threshold = self.thresholds[req.account_id]
            needed = 1 if threshold is None else threshold.needed(req)
            if decision == "approve" and len({*req.approvers, actor}) < needed:
                self._first_of_two(step, req, rid, actor)
                return

            state = "approved" if decision == "approve" else "rejected"
            events = Counter({f"request.{state}": 1})
            if decision == "approve":
                events["subscription.changed"] = 1
            self._check_accepted(
                step,
                events=events,
                transitions=[(rid, "pending", state, decision, actor)],
                account=req.account_id,
            )
            view = step.outcome.json()["result"]["request"]
            assert view["state"] == state
            assert view["decided_by"] == actor
            # Invariant 7 (R2), read from the directory table itself.
            assert after.members.get((req.account_id, actor)) in DECIDERS
            req.state = state
            if decision == "approve":
                req.approvers.append(actor)
                req.needed = needed
                event(f"approved after {len(req.approvers)} approval(s), {needed} needed")
                assert [a["actor_id"] for a in view["approvals"]] == req.approvers
                old = self.subs[req.account_id]
                new = applied(old, req.changes)
                self.subs[req.account_id] = new
                (changed,) = [
                    orjson.loads(r.payload)
                    for r in self._new_rows(t.outbox, before)
                    if r.type == "subscription.changed"
                ]
                assert changed["data"]["request_id"] == rid
                assert Sub.of(changed["data"]["new"]) == new
                assert Sub.of(changed["data"]["old"]) == old
            else:
                assert after.subscriptions == before.subscriptions

        def _first_of_two(self, step: Step, req: ModelRequest, rid: str, actor: str) -> None:
            """R23: recorded, told, still pending; nothing applied."""
            event("first of two approvals")
            self._check_accepted(
                step,
                events=Counter({"request.approval_recorded": 1}),
                transitions=[(rid, "pending", "pending", "approve", actor)],
                account=req.account_id,
            )
            view = step.outcome.json()["result"]["request"]
            assert view["state"] == "pending"
            assert view["decided_by"] is None
            assert step.after.subscriptions == step.before.subscriptions
            assert step.after.members.get((req.account_id, actor)) in DECIDERS
            req.approvers.append(actor)
            assert [a["actor_id"] for a in view["approvals"]] == req.approvers

        @rule(account=st.sampled_from(ACCOUNTS), second_above=st.sampled_from(THRESHOLDS))
        def set_threshold(self, account: str, second_above: str | None) -> None:
            """R23: the threshold set, changed or removed; no request moves for it."""
            type_, allows = self.kinds[account]
            body = {
                "account_id": account,
                "name": f"Account {account}",
                "type": type_,
                "allows_subscription_changes": allows,
                "approval": None if second_above is None else {"second_above": second_above},
            }
            step = self._send("account.upsert", body)
            self._check_accepted(step, events=Counter(), transitions=[], account=account)
            assert step.after.states == step.before.states
            self.thresholds[account] = (
                None
                if second_above is None
                else ModelThreshold(Decimal(second_above), self.subs[account].currency)
            )

        @precondition(lambda self: self.requests)
        @rule(data=st.data(), reason=st.none() | st.just("changed my mind"))
        def cancel(self, data: st.DataObject, reason: str | None) -> None:
            rid = self._pick_request(data)
            req = self.requests[rid]
            if data.draw(st.booleans(), label="by requester"):
                actor = req.requester_id
            else:
                actor = self._pick_actor(data, req.account_id)
            self._cancel(rid, actor, reason)

        def _cancel(
            self, rid: str, actor: str, reason: str | None, *, with_id: bool = True
        ) -> None:
            req = self.requests[rid]
            body: dict[str, Any] = {"request_id": rid, "actor_id": actor}
            if reason is not None:
                body["reason"] = reason
            role = self.roles[req.account_id].get(actor)
            expected: set[str] = set()
            if req.state != "pending":
                expected.add("invalid_state")
            elif role is None or (actor != req.requester_id and role not in DECIDERS):
                expected.add("forbidden")  # R4
            step = self._send("request.cancel", body, with_id=with_id)
            if step.duplicate:
                return
            if expected:
                self._check_refused(step, "request.cancel", expected)
                return
            self._check_accepted(
                step,
                events=Counter({"request.cancelled": 1}),
                transitions=[(rid, "pending", "cancelled", "cancel", actor)],
                account=req.account_id,
            )
            assert step.after.subscriptions == step.before.subscriptions
            req.state = "cancelled"

        @precondition(lambda self: self.requests)
        @rule(data=st.data(), reason=st.sampled_from(["ttl", "no decision in 30 days"]))
        def expire(self, data: st.DataObject, reason: str) -> None:
            rid = self._pick_request(data)
            req = self.requests[rid]
            self.clock.advance(minutes=3)
            before = snapshot(db)
            view = self.service.expire(rid, reason)
            after = snapshot(db)
            event(f"expire: {'ok' if view else 'not pending'}")
            if req.state != "pending":
                assert view is None
                assert after.counts == before.counts
                assert after.same_except(before)
                return
            assert view is not None
            assert view["state"] == "expired"
            assert after.counts["audit_log"] == before.counts["audit_log"]
            assert after.counts["processed_commands"] == before.counts["processed_commands"]
            self._check_effects(
                before,
                after,
                Counter({"request.expired": 1}),
                [(rid, "pending", "expired", "expire", None)],
                req.account_id,
            )
            assert after.subscriptions == before.subscriptions
            req.state = "expired"

        # --- rules: directory and accounts ------------------------------------------

        @rule(
            account=st.sampled_from(ACCOUNTS),
            # Mostly eligible, so that requests keep coming; else each other kind (R5, R6).
            kind=st.sampled_from(["online", "online", "online", *sorted(set(KINDS) - {"online"})]),
            subscription=st.sampled_from([None, None, *sorted(SUBSCRIPTIONS), "bad"]),
        )
        def upsert_account(self, account: str, kind: str, subscription: str | None) -> None:
            given = (
                None
                if subscription is None
                else BAD_SUBSCRIPTION
                if subscription == "bad"
                else SUBSCRIPTIONS[subscription]
            )
            self._upsert_account(account, kind, given, bad=subscription == "bad")

        @precondition(_has_pending)
        @rule(data=st.data())
        def owner_changes_directly(self, data: st.DataObject) -> None:
            """The owner applies one item of a pending request directly, so that approving
            the request no longer applies (R12)."""
            rid = self._pick_pending(data)
            req = self.requests[rid]
            item = data.draw(st.sampled_from(req.changes), label="item")
            sub = self.subs[req.account_id]
            if change_codes([item], sub):
                return  # the subscription was replaced since the submit
            new = applied(sub, [item])
            body = {
                "currency": new.currency,
                "billing_cycle": new.billing_cycle,
                "products": [
                    {"product": p, "plan": plan, "seats": n} for p, plan, n in new.products
                ],
            }
            self._upsert_account(req.account_id, "online", body, bad=False)

        def _upsert_account(
            self, account: str, kind: str, given: dict[str, Any] | None, *, bad: bool
        ) -> None:
            step = self._send("account.upsert", self._account_body(account, kind, given))
            if bad:
                self._check_refused(step, "account.upsert", {"invalid_change"})
                return
            pending = self._pending_of(account)
            voided = [pending] if pending is not None and KINDS[kind] != ELIGIBLE else []
            result = step.outcome.json()["result"]
            assert result["voided"] == voided, (result, voided)  # R6
            assert result["created"] is False
            self._check_accepted(
                step,
                events=Counter({"request.voided": len(voided)}) if voided else Counter(),
                transitions=[(rid, "pending", "voided", "void", None) for rid in voided],
                account=account,
            )
            self.kinds[account] = KINDS[kind]
            for rid in voided:
                self.requests[rid].state = "voided"
            if given is not None:
                self.subs[account] = Sub.of(given)
            else:
                assert step.after.subscriptions == step.before.subscriptions

        @rule(
            account=st.sampled_from(ACCOUNTS),
            user=st.sampled_from(USERS),
            role=st.sampled_from(ROLES),
        )
        def upsert_member(self, account: str, user: str, role: str) -> None:
            owners = {u for u, r in self.roles[account].items() if r == "owner"} - {user}
            step = self._send("member.upsert", self._member_body(account, user, role))
            if role == "owner" and owners:
                self._check_refused(step, "member.upsert", {"invalid_change"})
                return
            self._check_accepted(step, events=Counter(), transitions=[])
            self.roles[account][user] = role
            self.removed[account].discard(user)

        @rule(data=st.data(), account=st.sampled_from(ACCOUNTS))
        def remove_member(self, data: st.DataObject, account: str) -> None:
            members = sorted(self.roles[account])
            pool = st.sampled_from(USERS)
            user = data.draw((st.sampled_from(members) | pool) if members else pool, label="user")
            step = self._send("member.remove", {"account_id": account, "user_id": user})
            if user not in self.roles[account]:
                self._check_refused(step, "member.remove", {"unknown_member"})
                return
            self._check_accepted(step, events=Counter(), transitions=[])
            del self.roles[account][user]
            self.removed[account].add(user)

        # --- rules: redelivery --------------------------------------------------------

        @precondition(lambda self: self.sent)
        @rule(data=st.data())
        def redeliver(self, data: st.DataObject) -> None:
            """The same message_id and body again: the original reply, and no effect at all."""
            sent = data.draw(st.sampled_from(self.sent), label="redelivered")
            self.clock.advance(minutes=3)
            before = snapshot(db)
            outcome = self.service.handle(sent.routing_key, sent.body, sent.message_id)
            after = snapshot(db)
            event(f"redelivered {sent.routing_key}")
            assert outcome.duplicate
            assert outcome.reply == sent.reply
            assert after.counts == before.counts
            assert after.max_ids == before.max_ids
            assert after.same_except(before)

        @precondition(lambda self: self.bodies)
        @rule(data=st.data())
        def resend_without_message_id(self, data: st.DataObject) -> None:
            """A request.* body again with no message_id: the first reply within the dedupe
            window, a fresh run of the command after it."""
            routing_key, body = data.draw(st.sampled_from(self.bodies), label="resent")
            if routing_key == "request.submit":
                self._submit(
                    body["account_id"],
                    body["actor_id"],
                    body["changes"],
                    body.get("note"),
                    with_id=False,
                )
            elif routing_key == "request.decide":
                self._decide(
                    body["request_id"],
                    body["actor_id"],
                    body["decision"],
                    body.get("comment"),
                    with_id=False,
                )
            else:
                self._cancel(
                    body["request_id"], body["actor_id"], body.get("reason"), with_id=False
                )

        # --- invariants -----------------------------------------------------------

        @invariant()
        def tables_keep_the_rules(self) -> None:
            if not self.ready:
                return
            with db.engine.connect() as conn:
                requests = {r.request_id: r for r in conn.execute(select(t.requests))}
                history = list(
                    conn.execute(select(t.request_transitions).order_by(t.request_transitions.c.id))
                )
                subscriptions = _read_subscriptions(conn)
                accounts = {r.account_id: r for r in conn.execute(select(t.accounts))}
                members = {
                    (r.account_id, r.user_id): r.role
                    for r in conn.execute(select(t.members).where(t.members.c.removed_at.is_(None)))
                }

            # 1. R11: at most one pending request per account.
            pending = Counter(r.account_id for r in requests.values() if r.state == "pending")
            assert all(n <= 1 for n in pending.values()), pending

            # 2. R13: a final state never changes again.
            for rid, seen in self.last_state.items():
                if seen in FINAL_STATES:
                    assert requests[rid].state == seen, (rid, seen, requests[rid].state)
            self.last_state = {rid: r.state for rid, r in requests.items()}

            # 3. R15: history is append-only and chains up to the current state.
            rows = {r.id: tuple(r) for r in history}
            assert len(rows) >= len(self.seen_transitions)
            for id_, row in self.seen_transitions.items():
                assert rows.get(id_) == row, f"transition {id_} changed: {row} -> {rows.get(id_)}"
            self.seen_transitions = rows
            chains: dict[str, list[Any]] = {rid: [] for rid in requests}
            for r in history:
                chains[r.request_id].append(r)
            for rid, chain in chains.items():
                assert chain, f"request {rid} has no history"
                assert (chain[0].from_state, chain[0].to_state) == (None, "pending")
                assert chain[0].trigger == "submit"
                assert chain[0].actor_id == requests[rid].requester_id
                for earlier, later in itertools.pairwise(chain):
                    assert later.from_state == earlier.to_state, chain
                    assert later.at >= earlier.at
                assert chain[-1].to_state == requests[rid].state
                # 8. R23: a first approval of two stays pending; nobody counts twice.
                firsts = [r for r in chain[1:] if (r.from_state, r.to_state) == ("pending",) * 2]
                assert all(r.trigger == "approve" for r in firsts), chain
                approvers = [r.actor_id for r in chain if r.trigger == "approve"]
                assert len(set(approvers)) == len(approvers), chain
                assert approvers == self.requests[rid].approvers
                final = requests[rid].state != "pending"
                assert len(chain) == 1 + len(firsts) + (1 if final else 0), chain
                assert len(firsts) <= 1, chain
                if requests[rid].state == "approved":
                    assert len(approvers) >= self.requests[rid].needed, chain
                    assert len(approvers) == len(firsts) + 1

            # 4. The subscriptions are what the model's approvals and upserts made them.
            assert subscriptions == self.subs
            # The model agrees with the tables on everything else too.
            assert {a: (r.type, r.allows_subscription_changes) for a, r in accounts.items()} == (
                self.kinds
            )
            assert {
                a: (r.approval_second_above, r.approval_currency) for a, r in accounts.items()
            } == {
                a: (None, None) if m is None else (f"{m.second_above:.2f}", m.currency)
                for a, m in self.thresholds.items()
            }
            assert members == {
                (a, u): role for a, users in self.roles.items() for u, role in users.items()
            }
            assert {rid: r.state for rid, r in requests.items()} == {
                rid: m.state for rid, m in self.requests.items()
            }
            for rid, m in self.requests.items():
                row = requests[rid]
                assert (row.account_id, row.requester_id) == (m.account_id, m.requester_id)
                assert row.changes == m.changes
                assert (row.decided_at is None) == (m.state == "pending")

    LifecycleMachine.__name__ = f"LifecycleMachine_{db.url.get_backend_name()}"
    return LifecycleMachine


def _settings(db: Database) -> settings:
    examples, steps = (10, 25) if db.is_postgres else (25, 30)
    # A longer hunt on demand: SUBREQ_STATEFUL_SCALE=20 runs twenty times the examples.
    examples *= int(os.environ.get("SUBREQ_STATEFUL_SCALE", "1"))
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


def test_random_command_sequences_keep_the_lifecycle_invariants(
    database: Database, catalog: Catalog
) -> None:
    run_state_machine_as_test(make_machine(database, catalog), settings=_settings(database))
