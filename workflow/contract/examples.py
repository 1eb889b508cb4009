"""Example messages of the wire contract, with the values the test suite uses.

They are the AsyncAPI document's examples. Tests validate each against its model and
its schema, and run the command examples through the real service (with the clock at
``AT``, ``DECIDED_AT``, ...): every reply, event and dead letter it produces must equal
its example but for the ids it generated. The summary below is what the built-in
catalog prices (5 support seats, 575.00 USD/month).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from workflow.contract.names import ERROR_HEADER, EVENT_OF_STATE, ROUTING_KEY_HEADER

AT = "2026-01-05T09:00:00Z"
DECIDED_AT = "2026-01-06T14:30:00Z"
EXPIRED_AT = "2026-02-04T09:15:00Z"
"""A sweep a quarter of an hour after the default SUBREQ_REQUEST_TTL (30 days) ran out."""
SENT_AT = "2026-01-05T09:00:05Z"
REJECTION = {"decision": "reject", "comment": "not this quarter"}
VOIDING_UPSERT = {"type": "self_service"}
"""What makes the example account ineligible, so its pending request is voided (R6)."""
APPROVAL = {"second_above": "1000.00"}
"""The example account's two-person approval threshold (R23): the example request, at
575.00 USD a month, needs one decider."""
TWO_PERSON_UPSERT = {"approval": {"second_above": "500.00"}}
"""What makes the example request need two deciders (R23), so its first approval is
recorded and it stays pending."""
REQUEST_ID = "0b4f5c2e-8a1d-4e7b-9f3a-6c2d1e0f9a8b"
SEATS = [{"type": "add_seats", "product": "support", "quantity": 5}]
SUBSCRIPTION: dict[str, Any] = {
    "currency": "USD",
    "billing_cycle": "monthly",
    "products": [{"product": "support", "plan": "professional", "seats": 10}],
}
SUMMARY: dict[str, Any] = {
    "currency": "USD",
    "billing_cycle": "monthly",
    "period": "month",
    "lines": [
        {
            "item": SEATS[0],
            "description": "Add 5 seats to Support (Professional)",
            "current": {"product": "support", "plan": "professional", "seats": 10},
            "proposed": {"product": "support", "plan": "professional", "seats": 15},
            "cost": "575.00",
        }
    ],
    "total": "575.00",
}

COMMAND_EXAMPLES: dict[str, dict[str, Any]] = {
    "account.upsert": {
        "account_id": "acme",
        "name": "Acme Inc.",
        "type": "sales_assisted",
        "allows_subscription_changes": True,
        "subscription": SUBSCRIPTION,
        "approval": APPROVAL,
    },
    "member.upsert": {
        "account_id": "acme",
        "user_id": "acme-admin",
        "name": "Acme Admin",
        "email": "acme-admin@acme.example",
        "role": "admin",
        "locale": "en",
    },
    "member.remove": {"account_id": "acme", "user_id": "acme-agent"},
    "request.preview": {"account_id": "acme", "actor_id": "acme-admin", "changes": SEATS},
    "request.submit": {
        "account_id": "acme",
        "actor_id": "acme-admin",
        "changes": SEATS,
        "note": "new hires",
    },
    "request.decide": {
        "request_id": REQUEST_ID,
        "actor_id": "acme-owner",
        "decision": "approve",
        "comment": "go ahead",
    },
    "request.cancel": {"request_id": REQUEST_ID, "actor_id": "acme-admin", "reason": "not needed"},
    "request.get": {"request_id": REQUEST_ID, "actor_id": "acme-owner"},
    "request.list": {"account_id": "acme", "actor_id": "acme-owner", "state": "pending"},
    "catalog.get": {},
}
"""Run in this order against an empty database (plus the owner and an agent as members),
each is accepted; the test suite does exactly that."""

SUBMITTED = {
    "from": None,
    "to": "pending",
    "trigger": "submit",
    "actor_id": "acme-admin",
    "at": AT,
    "reason": "new hires",
    "channel": "amqp",
}


STEPS: dict[str, tuple[str, str | None, str, str]] = {
    "approved": ("approve", "acme-owner", DECIDED_AT, "go ahead"),
    "rejected": ("reject", "acme-owner", DECIDED_AT, REJECTION["comment"]),
    "cancelled": ("cancel", "acme-admin", DECIDED_AT, "not needed"),
    "expired": ("expire", None, EXPIRED_AT, "nobody decided within 30d"),
    "voided": (
        "void",
        None,
        DECIDED_AT,
        "account acme is self-service: its owner or a billing admin changes the "
        "subscription directly, so requests are not available",
    ),
}
"""How the example request leaves ``pending``: trigger, actor, time and reason (a
decision's or cancellation's reason is also its ``comment``)."""


def request_view(state: str = "pending") -> dict[str, Any]:
    """The example request, pending or after the step of ``STEPS`` that ends in ``state``."""
    view: dict[str, Any] = {
        "request_id": REQUEST_ID,
        "account_id": "acme",
        "requester_id": "acme-admin",
        "requester_name": "Acme Admin",
        "state": "pending",
        "changes": SEATS,
        "note": "new hires",
        "summary": SUMMARY,
        "created_at": AT,
        "decided_at": None,
        "decided_by": None,
        "comment": None,
        "history": [SUBMITTED],
        "approvals": [],
    }
    if state == "pending":
        return view
    trigger, actor, at, reason = STEPS[state]
    step = {
        "from": "pending",
        "to": state,
        "trigger": trigger,
        "actor_id": actor,
        "at": at,
        "reason": reason,
        "channel": None if trigger == "expire" else "amqp",
    }
    return {
        **view,
        "state": state,
        "decided_at": at,
        "decided_by": actor,
        "comment": reason if actor is not None else None,
        "history": [SUBMITTED, step],
        "approvals": [{"actor_id": actor, "at": at, "comment": reason}]
        if trigger == "approve"
        else [],
    }


def first_approval_view() -> dict[str, Any]:
    """The example request after the owner's approval, the first of two (R23): pending."""
    trigger, actor, at, comment = STEPS["approved"]
    step = {
        "from": "pending",
        "to": "pending",
        "trigger": trigger,
        "actor_id": actor,
        "at": at,
        "reason": comment,
        "channel": "amqp",
    }
    return {
        **request_view(),
        "history": [SUBMITTED, step],
        "approvals": [{"actor_id": actor, "at": at, "comment": comment}],
    }


CURRENCIES = ("EUR", "GBP", "USD")
PLAN_NAMES = {
    "team": "Team",
    "growth": "Growth",
    "professional": "Professional",
    "enterprise": "Enterprise",
    "enterprise_plus": "Enterprise Plus",
}
CATALOG_PRICES: dict[str, tuple[str, bool, dict[str, tuple[str, str, str]]]] = {
    "support": (
        "Support",
        False,
        {
            "team": ("25.00", "20.00", "25.00"),
            "growth": ("65.00", "55.00", "69.00"),
            "professional": ("109.00", "92.00", "115.00"),
            "enterprise": ("159.00", "135.00", "169.00"),
            "enterprise_plus": ("199.00", "172.00", "215.00"),
        },
    ),
    "suite": (
        "Suite",
        False,
        {
            "team": ("65.00", "55.00", "69.00"),
            "growth": ("109.00", "92.00", "115.00"),
            "professional": ("139.00", "119.00", "149.00"),
            "enterprise": ("205.00", "175.00", "219.00"),
            "enterprise_plus": ("269.00", "229.00", "289.00"),
        },
    ),
    "guide": (
        "Guide",
        True,
        {
            "professional": ("45.00", "39.00", "49.00"),
            "enterprise": ("75.00", "63.00", "79.00"),
            "enterprise_plus": ("95.00", "79.00", "99.00"),
        },
    ),
    "explore": (
        "Explore",
        True,
        {
            "professional": ("27.00", "23.00", "29.00"),
            "enterprise": ("45.00", "39.00", "49.00"),
            "enterprise_plus": ("65.00", "55.00", "69.00"),
        },
    ),
    "collaboration": (
        "Collaboration",
        True,
        {
            "growth": ("37.00", "31.00", "39.00"),
            "professional": ("45.00", "39.00", "49.00"),
            "enterprise": ("55.00", "47.00", "59.00"),
        },
    ),
    "productivity_pack": (
        "Productivity Pack",
        True,
        {
            "professional": ("23.00", "20.00", "25.00"),
            "enterprise": ("33.00", "28.00", "35.00"),
        },
    ),
}
"""The built-in catalog as ``catalog.get`` answers it: per product its name, whether a
request may add it, and each plan's monthly per-seat price in EUR, GBP and USD. A seat
billed annually costs twelve months less 20 %."""


def _cycle_prices(monthly: str) -> dict[str, str]:
    annual = (Decimal(monthly) * 12 * Decimal("0.8")).quantize(Decimal("0.01"))
    return {"monthly": monthly, "annual": str(annual)}


CATALOG: dict[str, Any] = {
    "products": [
        {
            "id": product,
            "name": name,
            "addable": addable,
            "plans": [
                {
                    "id": plan,
                    "name": PLAN_NAMES[plan],
                    "prices": {
                        currency: _cycle_prices(price)
                        for currency, price in zip(CURRENCIES, prices, strict=True)
                    },
                }
                for plan, prices in plans.items()
            ],
        }
        for product, (name, addable, plans) in CATALOG_PRICES.items()
    ],
    "currencies": list(CURRENCIES),
    "billing_cycles": ["monthly", "annual"],
}


def _ok(result: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "result": result}


REPLY_EXAMPLES: dict[str, dict[str, Any]] = {
    "account.upsert": _ok(
        {
            "account_id": "acme",
            "created": True,
            "voided": [],
            "approval": {**APPROVAL, "currency": "USD"},
        }
    ),
    "member.upsert": _ok({"account_id": "acme", "user_id": "acme-admin", "created": True}),
    "member.remove": _ok({"account_id": "acme", "user_id": "acme-agent", "removed": True}),
    "request.preview": _ok({"summary": SUMMARY}),
    "request.submit": _ok({"request": request_view()}),
    "request.decide": _ok({"request": request_view("approved")}),
    "request.cancel": _ok({"request": request_view("cancelled")}),
    "request.get": _ok({"request": request_view()}),
    "request.list": _ok({"requests": [request_view()]}),
    "catalog.get": _ok({"catalog": CATALOG}),
}

ERROR_EXAMPLES: dict[str, dict[str, Any]] = {
    "forbidden": {
        "ok": False,
        "error": {
            "code": "forbidden",
            "message": "as the account owner you have billing permission: "
            "update the subscription directly",
            "details": [
                {
                    "code": "forbidden",
                    "reason": "as the account owner you have billing permission: "
                    "update the subscription directly",
                    "rule": "R1",
                }
            ],
        },
    },
    "invalid_message": {
        "ok": False,
        "error": {
            "code": "invalid_message",
            "message": "comment: a rejection needs a comment telling the requester why (R19)",
            "details": [
                {
                    "code": "invalid_message",
                    "reason": "comment: a rejection needs a comment telling the requester "
                    "why (R19)",
                    "rule": "R19",
                    "field": "comment",
                }
            ],
        },
    },
}

_NOTIFICATION: dict[str, Any] = {
    "notification_id": "5d7e9a10-3c4b-4f2a-8e6d-1b0c9a8f7e6d",
    "template": "request_submitted",
    "locale": "en",
    "recipient": {
        "user_id": "acme-owner",
        "email": "acme-owner@acme.example",
        "name": "Acme Owner",
    },
    "subject": "Acme Admin asks to change the subscription of Acme Inc.",
    "text": "Hello Acme Owner,\n\nAcme Admin asked for these changes to the subscription of "
    "Acme Inc.:\n\n  - Add 5 seats to Support (Professional): +575.00 USD\n\n"
    "Additional cost: 575.00 USD per month.\n\nNote from Acme Admin: new hires\n\n"
    "As the account owner or a billing admin, you can approve or reject the\n"
    "request. Nothing changes until one of you does.\n\n-- \n"
    f"subreq, subscription change requests\nReference: {REQUEST_ID}",
    "context": {
        "recipient": "Acme Owner",
        "to_requester": False,
        "account": "Acme Inc.",
        "request_id": REQUEST_ID,
        "requester": "Acme Admin",
        "actor": None,
        "note": "new hires",
        "comment": None,
        "reason": None,
        "lines": [
            {
                "kind": "add_seats",
                "description": "Add 5 seats to Support (Professional)",
                "product": "Support",
                "plan": "Professional",
                "from_plan": "Professional",
                "seats": 15,
                "added": 5,
                "cost": "575.00",
            }
        ],
        "total": "575.00",
        "currency": "USD",
        "period": "month",
        "created_at": AT,
        "at": AT,
        "pending_seconds": 0,
        "expires_at": None,
    },
}
"""The owner's notice of the example submit (the first notification.requested it causes)."""


def _event(n: int, type_: str, data: dict[str, Any], at: str = AT) -> dict[str, Any]:
    return {
        "event_id": f"9c1d2e3f-4a5b-4c6d-8e7f-{n:012d}",
        "type": type_,
        "occurred_at": at,
        "account_id": "acme",
        "request_id": REQUEST_ID,
        "data": data,
    }


def _request_event(n: int, state: str) -> dict[str, Any]:
    at = STEPS[state][2] if state in STEPS else AT
    return _event(n, EVENT_OF_STATE[state], {"request": request_view(state)}, at)


EVENT_EXAMPLES: dict[str, dict[str, Any]] = {
    "request.submitted": _request_event(1, "pending"),
    "request.approved": _request_event(2, "approved"),
    "request.rejected": _request_event(3, "rejected"),
    "request.cancelled": _request_event(4, "cancelled"),
    "request.expired": _request_event(5, "expired"),
    "request.voided": _request_event(6, "voided"),
    "request.approval_recorded": _event(
        10,
        "request.approval_recorded",
        {"request": first_approval_view(), "approver_id": STEPS["approved"][1]},
        DECIDED_AT,
    ),
    "subscription.changed": _event(
        7,
        "subscription.changed",
        {
            "old": SUBSCRIPTION,
            "new": {**SUBSCRIPTION, "products": [{**SUBSCRIPTION["products"][0], "seats": 15}]},
            "request_id": REQUEST_ID,
        },
        DECIDED_AT,
    ),
    "notification.requested": _event(8, "notification.requested", _NOTIFICATION),
    "notification.sent": _event(
        9,
        "notification.sent",
        {
            **{k: _NOTIFICATION[k] for k in ("notification_id", "recipient", "template")},
            "message_id": f"<{_NOTIFICATION['notification_id']}@subreq.invalid>",
        },
        SENT_AT,
    ),
}

DEAD_LETTER_EXAMPLE: dict[str, Any] = {
    "name": "schema_violation",
    "summary": "A request.submit without changes, as the consumer dead-letters it.",
    "headers": {
        ERROR_HEADER: "changes: Field required",
        ROUTING_KEY_HEADER: "request.submit",
    },
    "payload": {"account_id": "acme", "actor_id": "acme-admin"},
}
