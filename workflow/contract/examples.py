"""Example messages of the wire contract, with the values the test suite uses.

They are the AsyncAPI document's examples. Tests validate each against its model and
run the command examples through the real service, whose answers must match: the
summary below is what the built-in catalog prices (5 support seats, 575.00 USD/month).
"""

from __future__ import annotations

from typing import Any

from workflow.contract.names import ERROR_HEADER, ROUTING_KEY_HEADER

AT = "2026-01-05T09:00:00Z"
DECIDED_AT = "2026-01-06T14:30:00Z"
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
}


def request_view(state: str = "pending") -> dict[str, Any]:
    """The example request, pending or decided by the owner."""
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
    }
    if state == "pending":
        return view
    trigger = {"approved": "approve", "rejected": "reject"}[state]
    decided = {
        "from": "pending",
        "to": state,
        "trigger": trigger,
        "actor_id": "acme-owner",
        "at": DECIDED_AT,
        "reason": "go ahead",
    }
    return {
        **view,
        "state": state,
        "decided_at": DECIDED_AT,
        "decided_by": "acme-owner",
        "comment": "go ahead",
        "history": [SUBMITTED, decided],
    }


def _prices(monthly: str, annual: str) -> dict[str, str]:
    return {"monthly": monthly, "annual": annual}


SUPPORT = {
    "id": "support",
    "name": "Support",
    "addable": False,
    "plans": [
        {
            "id": "team",
            "name": "Team",
            "prices": {
                "EUR": _prices("25.00", "240.00"),
                "GBP": _prices("20.00", "192.00"),
                "USD": _prices("25.00", "240.00"),
            },
        },
        {
            "id": "growth",
            "name": "Growth",
            "prices": {
                "EUR": _prices("65.00", "624.00"),
                "GBP": _prices("55.00", "528.00"),
                "USD": _prices("69.00", "662.40"),
            },
        },
        {
            "id": "professional",
            "name": "Professional",
            "prices": {
                "EUR": _prices("109.00", "1046.40"),
                "GBP": _prices("92.00", "883.20"),
                "USD": _prices("115.00", "1104.00"),
            },
        },
        {
            "id": "enterprise",
            "name": "Enterprise",
            "prices": {
                "EUR": _prices("159.00", "1526.40"),
                "GBP": _prices("135.00", "1296.00"),
                "USD": _prices("169.00", "1622.40"),
            },
        },
        {
            "id": "enterprise_plus",
            "name": "Enterprise Plus",
            "prices": {
                "EUR": _prices("199.00", "1910.40"),
                "GBP": _prices("172.00", "1651.20"),
                "USD": _prices("215.00", "2064.00"),
            },
        },
    ],
}
"""The built-in catalog's first product as ``catalog.get`` answers it (the example shows
only this one of its products)."""


def _ok(result: dict[str, Any]) -> dict[str, Any]:
    return {"ok": True, "result": result}


REPLY_EXAMPLES: dict[str, dict[str, Any]] = {
    "account.upsert": _ok({"account_id": "acme", "created": True, "voided": []}),
    "member.upsert": _ok({"account_id": "acme", "user_id": "acme-admin", "created": True}),
    "member.remove": _ok({"account_id": "acme", "user_id": "acme-agent", "removed": True}),
    "request.preview": _ok({"summary": SUMMARY}),
    "request.submit": _ok({"request": request_view()}),
    "request.decide": _ok({"request": request_view("approved")}),
    "request.cancel": _ok({"request": {**request_view(), "state": "cancelled"}}),
    "request.get": _ok({"request": request_view()}),
    "request.list": _ok({"requests": [request_view()]}),
    "catalog.get": _ok(
        {
            "catalog": {
                "products": [SUPPORT],
                "currencies": ["EUR", "GBP", "USD"],
                "billing_cycles": ["monthly", "annual"],
            }
        }
    ),
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

_NOTIFICATION = {
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
    "Additional cost: 575.00 USD per month.\n",
}


def _event(n: int, type_: str, data: dict[str, Any], at: str = AT) -> dict[str, Any]:
    return {
        "event_id": f"9c1d2e3f-4a5b-4c6d-8e7f-{n:012d}",
        "type": type_,
        "occurred_at": at,
        "account_id": "acme",
        "request_id": REQUEST_ID,
        "data": data,
    }


def _request_event(n: int, type_: str, state: str, at: str = DECIDED_AT) -> dict[str, Any]:
    view = request_view("approved" if state == "approved" else "rejected")
    if state not in ("approved", "rejected"):
        reasons = {
            "cancelled": "not needed",
            "expired": "no decision in 30 days",
            "voided": "the account is no longer sales-assisted",
        }
        trigger = {"cancelled": "cancel", "expired": "expire", "voided": "void"}[state]
        actor = {"cancelled": "acme-admin"}.get(state)
        step = {
            "from": "pending",
            "to": state,
            "trigger": trigger,
            "actor_id": actor,
            "at": at,
            "reason": reasons[state],
        }
        view = {
            **request_view(),
            "state": state,
            "decided_at": at,
            "decided_by": actor,
            "history": [SUBMITTED, step],
        }
    return _event(n, type_, {"request": view}, at)


EVENT_EXAMPLES: dict[str, dict[str, Any]] = {
    "request.submitted": _event(1, "request.submitted", {"request": request_view()}),
    "request.approved": _request_event(2, "request.approved", "approved"),
    "request.rejected": _request_event(3, "request.rejected", "rejected"),
    "request.cancelled": _request_event(4, "request.cancelled", "cancelled"),
    "request.expired": _request_event(5, "request.expired", "expired"),
    "request.voided": _request_event(6, "request.voided", "voided"),
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
        {k: _NOTIFICATION[k] for k in ("notification_id", "recipient")},
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
