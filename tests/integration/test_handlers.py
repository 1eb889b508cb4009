"""Every command end to end through CommandService, on SQLite and on PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from sqlalchemy import select

from tests.integration.helpers import (
    SEATS,
    account,
    counts,
    decide,
    events,
    member,
    seed,
    send,
    submit,
)
from workflow.app.service import CommandService
from workflow.persistence.tables import audit_log, subscription_products


def products(service: CommandService, account_id: str = "acme") -> dict[str, tuple[str, int]]:
    with service.db.engine.connect() as conn:
        rows = conn.execute(
            select(subscription_products).where(subscription_products.c.account_id == account_id)
        ).mappings()
        return {r["product"]: (r["plan"], r["seats"]) for r in rows}


def error(reply: dict) -> dict:
    assert reply["ok"] is False, reply
    return reply["error"]


def test_r10_preview_prices_the_change_without_storing_anything(service: CommandService) -> None:
    seed(service)
    before = counts(service.db)
    reply = send(
        service,
        "request.preview",
        {"account_id": "acme", "actor_id": "acme-admin", "changes": SEATS},
    )
    summary = reply["result"]["summary"]
    assert summary["total"] == "575.00"
    assert summary["period"] == "month"
    assert summary["lines"][0]["current"]["seats"] == 10
    assert summary["lines"][0]["proposed"]["seats"] == 15
    assert counts(service.db) == before


def test_submit_creates_pending_request_with_history_and_events(service: CommandService) -> None:
    seed(service)
    reply = submit(service, note="for the new team")
    request = reply["result"]["request"]
    assert request["state"] == "pending"
    assert request["requester_id"] == "acme-admin"
    assert request["requester_name"] == "Acme Admin"
    assert request["summary"]["total"] == "575.00"
    assert request["history"] == [
        {
            "from": None,
            "to": "pending",
            "trigger": "submit",
            "actor_id": "acme-admin",
            "at": request["created_at"],
            "reason": "for the new team",
            "channel": "amqp",
        }
    ]
    submitted = events(service.db, "request.submitted")
    assert [e["data"]["request"]["request_id"] for e in submitted] == [request["request_id"]]
    assert submitted[0]["account_id"] == "acme"


def test_r16_owner_is_told_of_a_submission(service: CommandService) -> None:
    seed(service)
    request = submit(service)["result"]["request"]
    notices = events(service.db, "notification.requested")
    assert [n["data"]["recipient"]["user_id"] for n in notices] == ["acme-owner"]
    text = notices[0]["data"]["text"]
    assert "Acme Admin" in text
    assert "Add 5 seats to Support (Professional)" in text
    assert "575.00 USD per month" in text
    assert notices[0]["request_id"] == request["request_id"]


def test_r16_billing_admins_are_told_when_configured(service: CommandService) -> None:
    service.notify_billing_admins = True
    seed(service)
    submit(service)
    notices = events(service.db, "notification.requested")
    assert sorted(n["data"]["recipient"]["user_id"] for n in notices) == [
        "acme-billing",
        "acme-owner",
    ]


def test_r17_notification_uses_recipient_locale_with_english_fallback(
    service: CommandService,
) -> None:
    seed(service)
    send(service, "member.upsert", member("acme-owner", "owner", locale="it-IT"))
    submit(service)
    notice = events(service.db, "notification.requested")[-1]["data"]
    assert notice["locale"] == "it"
    assert "chiede di modificare" in notice["subject"]
    pending = notice["notification_id"] and events(service.db, "request.submitted")[-1]
    request_id = pending["data"]["request"]["request_id"]
    send(service, "request.cancel", {"request_id": request_id, "actor_id": "acme-admin"})
    send(service, "member.upsert", member("acme-owner", "owner", locale="fr"))
    assert submit(service)["ok"]
    fallback = events(service.db, "notification.requested")[-1]["data"]
    assert fallback["locale"] == "en"
    assert fallback["template"] == "request_submitted"


def test_idempotency_same_message_id_has_one_effect_and_same_reply(
    service: CommandService,
) -> None:
    seed(service)
    body = orjson.dumps({"account_id": "acme", "actor_id": "acme-admin", "changes": SEATS})
    first = service.handle("request.submit", body, "same-key")
    before = counts(service.db)
    again = service.handle("request.submit", body, "same-key")
    assert again.duplicate
    assert again.reply == first.reply
    assert counts(service.db) == before


def test_idempotency_body_hash_without_message_id_within_window(
    service: CommandService, clock
) -> None:
    seed(service)
    body = orjson.dumps({"account_id": "acme", "actor_id": "acme-admin", "changes": SEATS})
    first = service.handle("request.submit", body)
    assert first.json()["ok"]
    again = service.handle("request.submit", body)
    assert again.duplicate
    assert again.reply == first.reply
    clock.advance(minutes=11)
    later = service.handle("request.submit", body)
    assert not later.duplicate
    assert error(later.json())["code"] == "request_pending"


def test_r11_second_submit_is_refused_naming_the_pending_request(
    service: CommandService,
) -> None:
    seed(service)
    first = submit(service)["result"]["request"]["request_id"]
    refusal = error(submit(service, actor="admin-2"))
    assert refusal["code"] == "request_pending"
    assert first in refusal["message"]
    assert refusal["details"][0]["rule"] == "R11"
    assert refusal["details"][0]["request_id"] == first  # no need to read it out of the text


def test_a_submit_deduplicated_by_body_is_new_once_its_request_is_no_longer_pending(
    service: CommandService,
) -> None:
    """Contract: body-hash deduplication of a submit holds only while its request is pending."""
    seed(service)
    body = orjson.dumps({"account_id": "acme", "actor_id": "acme-admin", "changes": SEATS})
    first = service.handle("request.submit", body).json()["result"]["request"]
    assert service.handle("request.submit", body).duplicate  # still pending: the same submit
    cancel = {"request_id": first["request_id"], "actor_id": "acme-admin"}
    assert send(service, "request.cancel", cancel)["ok"]
    again = service.handle("request.submit", body)
    assert not again.duplicate
    created = again.json()["result"]["request"]
    assert created["request_id"] != first["request_id"]
    assert created["state"] == "pending"
    assert service.handle("request.submit", body).reply == again.reply  # pending again


def test_a_refused_submit_is_not_deduplicated_by_its_body(service: CommandService) -> None:
    seed(service)
    blocking = submit(service, actor="admin-2")["result"]["request"]["request_id"]
    body = orjson.dumps({"account_id": "acme", "actor_id": "acme-admin", "changes": SEATS})
    assert error(service.handle("request.submit", body).json())["code"] == "request_pending"
    assert decide(service, blocking, "owner", "reject", comment="not now")["ok"]
    retried = service.handle("request.submit", body)
    assert not retried.duplicate
    assert retried.json()["ok"], retried.json()


def test_a_byte_order_mark_before_the_body_is_ignored(service: CommandService) -> None:
    seed(service)
    body = b"\xef\xbb\xbf" + orjson.dumps(
        {"account_id": "acme", "actor_id": "acme-admin", "changes": SEATS}
    )
    reply = service.handle("request.submit", body).json()
    assert reply["ok"], reply


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"type": "add_seats", "product": "support", "quantity": "many"}, "changes[0].quantity"),
        ({"type": "add_seats", "product": "support"}, "changes[0].quantity"),
        ({"type": "add_product", "product": "guide", "plan": 7}, "changes[0].plan"),
        ({"type": "more_seats", "product": "support"}, "changes[0].type"),
        ({"product": "support", "quantity": 1}, "changes[0].type"),
    ],
)
def test_invalid_fields_are_named_by_their_path_in_the_body_as_sent(
    service: CommandService, item: dict, field: str
) -> None:
    seed(service)
    before = counts(service.db)
    refusal = error(submit(service, changes=[SEATS[0], item]))
    assert refusal["code"] == "invalid_message"
    fields = [d["field"] for d in refusal["details"]]
    assert fields == [field.replace("[0]", "[1]")], refusal
    assert counts(service.db)["requests"] == before["requests"]


def test_r1_owner_and_billing_admin_are_told_to_change_directly(service: CommandService) -> None:
    seed(service)
    for actor in ("owner", "billing"):
        refusal = error(submit(service, actor=actor))
        assert refusal["code"] == "forbidden"
        assert "update the subscription directly" in refusal["message"]
        assert refusal["details"][0]["rule"] == "R1"


def test_r1_agent_gets_a_plain_refusal(service: CommandService) -> None:
    seed(service)
    refusal = error(submit(service, actor="agent"))
    assert refusal["code"] == "forbidden"
    assert "directly" not in refusal["message"]


def test_r3_role_in_message_grants_nothing(service: CommandService) -> None:
    seed(service)
    refusal = error(submit(service, actor="agent", role="admin", billing_permission=True))
    assert refusal["code"] == "forbidden"


@pytest.mark.parametrize(
    ("kind", "words"),
    [({"type_": "self_service"}, "self-service"), ({"allows": False}, "managed")],
)
def test_r5_ineligible_accounts_refuse_naming_which(
    service: CommandService, kind: dict, words: str
) -> None:
    seed(service, **kind)
    refusal = error(submit(service))
    assert refusal["code"] == "not_eligible"
    assert words in refusal["message"]
    assert refusal["details"][0]["rule"] == "R5"


def test_r8_r9_every_problem_is_reported(service: CommandService) -> None:
    seed(service)
    refusal = error(
        submit(
            service,
            changes=[
                {"type": "change_payment_method", "card": "4111"},
                {"type": "upgrade_plan", "product": "support", "plan": "team"},
                {"type": "add_product", "product": "guide", "plan": "galactic"},
                {"type": "add_seats", "product": "support", "quantity": 0},
            ],
        )
    )
    assert refusal["code"] == "out_of_scope"
    rules = [(d["rule"], d["code"], d.get("field")) for d in refusal["details"]]
    assert ("R8", "out_of_scope", "changes[0].type") in rules
    assert ("R9", "invalid_change", "changes[1].plan") in rules
    assert ("R9", "invalid_change", "changes[2].plan") in rules
    assert ("R9", "invalid_change", "changes[3].quantity") in rules


def test_r2_approve_applies_the_change_and_emits_events(service: CommandService) -> None:
    seed(service)
    request_id = submit(
        service, changes=[*SEATS, {"type": "add_product", "product": "guide", "plan": "enterprise"}]
    )["result"]["request"]["request_id"]
    reply = decide(service, request_id, "billing", comment="go ahead")
    request = reply["result"]["request"]
    assert request["state"] == "approved"
    assert request["decided_by"] == "acme-billing"
    assert request["comment"] == "go ahead"
    assert [h["trigger"] for h in request["history"]] == ["submit", "approve"]
    assert products(service) == {
        "support": ("professional", 15),
        "guide": ("enterprise", 15),
    }
    changed = events(service.db, "subscription.changed")
    assert len(changed) == 1
    assert changed[0]["data"]["old"]["products"] == [
        {"product": "support", "plan": "professional", "seats": 10}
    ]
    assert changed[0]["data"]["request_id"] == request_id
    assert len(events(service.db, "request.approved")) == 1
    told = events(service.db, "notification.requested")[-1]["data"]
    assert told["template"] == "request_approved"
    assert told["recipient"]["user_id"] == "acme-admin"


def test_r2_requester_and_other_accounts_cannot_decide(service: CommandService) -> None:
    seed(service)
    seed(service, "globex")
    request_id = submit(service)["result"]["request"]["request_id"]
    assert error(decide(service, request_id, "admin"))["details"][0]["rule"] == "R2"
    outsider = decide(service, request_id, "owner", account_id="globex")
    assert error(outsider)["code"] == "forbidden"
    assert products(service) == {"support": ("professional", 10)}


def test_r19_reject_needs_a_comment_which_the_requester_gets(service: CommandService) -> None:
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    refusal = error(decide(service, request_id, "owner", "reject"))
    assert refusal["code"] == "invalid_message"
    assert refusal["details"][0] == {
        "code": "invalid_message",
        "reason": refusal["details"][0]["reason"],
        "rule": "R19",
        "field": "comment",
    }
    request = decide(service, request_id, "owner", "reject", "budget is frozen")["result"]
    assert request["request"]["state"] == "rejected"
    told = events(service.db, "notification.requested")[-1]["data"]
    assert told["template"] == "request_rejected"
    assert "budget is frozen" in told["text"]


def test_r13_final_state_never_changes(service: CommandService) -> None:
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    assert decide(service, request_id, "owner")["ok"]
    refusal = error(decide(service, request_id, "owner", "reject", "changed my mind"))
    assert refusal["code"] == "invalid_state"
    assert "approved" in refusal["message"]
    cancel = send(service, "request.cancel", {"request_id": request_id, "actor_id": "acme-admin"})
    assert error(cancel)["code"] == "invalid_state"


def test_r12_approval_revalidates_against_the_subscription_as_it_is(
    service: CommandService,
) -> None:
    seed(service)
    request_id = submit(
        service, changes=[{"type": "add_product", "product": "guide", "plan": "professional"}]
    )["result"]["request"]["request_id"]
    owner_added_it = account(
        products=[
            {"product": "support", "plan": "professional", "seats": 10},
            {"product": "guide", "plan": "enterprise", "seats": 3},
        ]
    )
    assert send(service, "account.upsert", owner_added_it)["ok"]
    refusal = error(decide(service, request_id, "owner"))
    assert refusal["code"] == "invalid_change"
    assert refusal["details"][0]["rule"] == "R9"
    got = send(service, "request.get", {"request_id": request_id, "actor_id": "acme-owner"})
    assert got["result"]["request"]["state"] == "pending"
    assert products(service)["guide"] == ("enterprise", 3)


def test_r4_requester_withdraws_and_deciders_are_told(service: CommandService) -> None:
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    other = send(service, "request.cancel", {"request_id": request_id, "actor_id": "acme-admin-2"})
    assert error(other)["details"][0]["rule"] == "R4"
    reply = send(
        service,
        "request.cancel",
        {"request_id": request_id, "actor_id": "acme-admin", "reason": "not needed"},
    )
    assert reply["result"]["request"]["state"] == "cancelled"
    told = events(service.db, "notification.requested")[-1]["data"]
    assert told["template"] == "request_withdrawn"
    assert told["recipient"]["user_id"] == "acme-owner"


def test_r17_decider_cancels_and_requester_is_told(service: CommandService) -> None:
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    reply = send(service, "request.cancel", {"request_id": request_id, "actor_id": "acme-owner"})
    assert reply["result"]["request"]["state"] == "cancelled"
    told = events(service.db, "notification.requested")[-1]["data"]
    assert told["template"] == "request_cancelled"
    assert told["recipient"]["user_id"] == "acme-admin"


def test_r6_losing_eligibility_voids_the_pending_request(service: CommandService) -> None:
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    reply = send(service, "account.upsert", account(allows=False))
    assert reply["result"]["voided"] == [request_id]
    got = send(service, "request.get", {"request_id": request_id, "actor_id": "acme-admin"})
    request = got["result"]["request"]
    assert request["state"] == "voided"
    assert request["history"][-1]["trigger"] == "void"
    assert "managed" in request["history"][-1]["reason"]
    assert len(events(service.db, "request.voided")) == 1
    told = {
        n["data"]["recipient"]["user_id"]
        for n in events(service.db, "notification.requested")
        if n["data"]["template"] == "request_voided"
    }
    assert told == {"acme-admin", "acme-owner"}


def test_r14_expire_ends_a_pending_request_once(service: CommandService) -> None:
    seed(service)
    request_id = submit(service)["result"]["request"]["request_id"]
    view = service.expire(request_id, "pending for more than 30 days")
    assert view is not None
    assert view["state"] == "expired"
    assert service.expire(request_id, "again") is None
    assert len(events(service.db, "request.expired")) == 1


def test_r15_refusals_are_audited(service: CommandService) -> None:
    seed(service)
    error(submit(service, actor="agent"))
    with service.db.engine.connect() as conn:
        rows = list(conn.execute(select(audit_log)).mappings())
    assert len(rows) == 1
    assert rows[0]["code"] == "forbidden"
    assert rows[0]["actor_id"] == "acme-agent"
    assert rows[0]["account_id"] == "acme"
    assert rows[0]["command"] == "request.submit"
    assert rows[0]["details"][0]["rule"] == "R1"


def test_list_is_newest_first_and_members_only(service: CommandService, clock) -> None:
    seed(service)
    first = submit(service)["result"]["request"]["request_id"]
    send(service, "request.cancel", {"request_id": first, "actor_id": "acme-admin"})
    clock.advance(seconds=5)
    second = submit(service)["result"]["request"]["request_id"]
    listed = send(service, "request.list", {"account_id": "acme", "actor_id": "acme-agent"})
    assert [r["request_id"] for r in listed["result"]["requests"]] == [second, first]
    only = send(
        service,
        "request.list",
        {"account_id": "acme", "actor_id": "acme-agent", "state": "cancelled"},
    )
    assert [r["request_id"] for r in only["result"]["requests"]] == [first]
    seed(service, "globex")
    outsider = send(service, "request.list", {"account_id": "acme", "actor_id": "globex-owner"})
    assert error(outsider)["code"] == "forbidden"


@pytest.mark.parametrize(
    ("routing_key", "body", "code"),
    [
        (
            "request.submit",
            {"account_id": "nope", "actor_id": "x", "changes": SEATS},
            "unknown_account",
        ),
        (
            "request.submit",
            {"account_id": "acme", "actor_id": "ghost", "changes": SEATS},
            "unknown_member",
        ),
        ("request.get", {"request_id": "missing", "actor_id": "acme-admin"}, "not_found"),
        (
            "request.decide",
            {"request_id": "missing", "actor_id": "acme-owner", "decision": "approve"},
            "not_found",
        ),
        ("member.remove", {"account_id": "acme", "user_id": "ghost"}, "unknown_member"),
        ("member.upsert", member("second-owner", "owner"), "invalid_change"),
    ],
)
def test_lookups_refuse_with_contract_codes(
    service: CommandService, routing_key: str, body: dict, code: str
) -> None:
    seed(service)
    assert error(send(service, routing_key, body))["code"] == code


@pytest.mark.parametrize(
    ("routing_key", "body", "field"),
    [
        ("request.submit", b"not json", None),
        ("request.submit", b"[1, 2]", None),
        ("request.submit", b'{"account_id": "acme"}', "actor_id"),
        ("request.submit", b'{"account_id": "acme", "actor_id": "a", "changes": []}', "changes"),
        (
            "request.submit",
            b'{"account_id": "acme", "actor_id": "a", "changes": [{"type": "teleport"}]}',
            "changes[0]",
        ),
        ("member.upsert", orjson.dumps({**member("x", "emperor")}), "role"),
        (
            "request.decide",
            b'{"request_id": "r", "actor_id": "a", "decision": "maybe"}',
            "decision",
        ),
        ("no.such.command", b"{}", None),
        ("request.get", b"\xff\xfe\x00", None),
        ("request.get", b"{" + b" " * (70 * 1024) + b"}", None),
    ],
)
def test_invalid_messages_are_refused_and_change_nothing(
    service: CommandService, routing_key: str, body: bytes, field: str | None
) -> None:
    seed(service)
    before = counts(service.db)
    outcome = service.handle(routing_key, body, "bad-1")
    assert outcome.invalid
    refusal = error(outcome.json())
    assert refusal["code"] == "invalid_message"
    if field is not None:
        assert any(d.get("field", "").startswith(field) for d in refusal["details"]), refusal
    after = counts(service.db)
    assert after.pop("audit_log") == before.pop("audit_log") + 1
    assert after == before


def test_add_product_without_seats_matches_largest_product(service: CommandService) -> None:
    seed(
        service,
        products=[
            {"product": "support", "plan": "professional", "seats": 10},
            {"product": "suite", "plan": "team", "seats": 25},
        ],
    )
    reply = submit(
        service, changes=[{"type": "add_product", "product": "explore", "plan": "professional"}]
    )
    line = reply["result"]["request"]["summary"]["lines"][0]
    assert line["proposed"]["seats"] == 25
    assert Decimal(line["cost"]) > 0


def test_account_upsert_refuses_a_subscription_the_catalog_cannot_price(
    service: CommandService,
) -> None:
    refusal = error(
        send(
            service,
            "account.upsert",
            account(currency="JPY", products=[{"product": "support", "plan": "ultra", "seats": 1}]),
        )
    )
    fields = {d["field"] for d in refusal["details"]}
    assert fields == {"subscription.currency", "subscription.products[0].plan"}


def test_long_message_ids_still_deduplicate(service: CommandService) -> None:
    seed(service)
    body = orjson.dumps({"account_id": "acme", "actor_id": "acme-admin", "changes": SEATS})
    long_id = "m" * 500
    first = service.handle("request.submit", body, long_id)
    again = service.handle("request.submit", body, long_id)
    assert first.json()["ok"]
    assert again.duplicate
    assert again.reply == first.reply
    other = service.handle("request.submit", body, "m" * 499 + "n")
    assert not other.duplicate


@pytest.mark.parametrize(
    ("routing_key", "body"),
    [
        ("member.upsert", orjson.dumps(member("nul\x00user", "admin"))),
        ("request.get", b'{"request_id": "r\\u0000", "actor_id": "acme-admin"}'),
        ("request\x00.get", b'{"request_id": "r", "actor_id": "acme-admin"}'),
    ],
)
def test_nul_characters_are_refused_not_stored(
    service: CommandService, routing_key: str, body: bytes
) -> None:
    seed(service)
    before = counts(service.db)
    outcome = service.handle(routing_key, body, "nul\x00id")
    assert outcome.invalid
    assert error(outcome.json())["code"] == "invalid_message"
    after = counts(service.db)
    assert after.pop("audit_log") == before.pop("audit_log") + 1
    assert after == before


def test_catalog_get_lists_every_product_plan_and_price_without_recording_anything(
    service: CommandService,
) -> None:
    before = counts(service.db)
    reply = send(service, "catalog.get", {})
    assert reply["ok"] is True, reply
    catalog = reply["result"]["catalog"]
    assert [p["id"] for p in catalog["products"]] == [p.id for p in service.catalog.products]
    assert catalog["billing_cycles"] == ["monthly", "annual"]
    for product in catalog["products"]:
        known = service.catalog.product(product["id"])
        assert known is not None
        assert product["addable"] is known.addable
        assert [plan["id"] for plan in product["plans"]] == [plan.id for plan in known.plans]
        for plan in product["plans"]:
            assert set(plan["prices"]) == set(catalog["currencies"])
            for currency, prices in plan["prices"].items():
                for cycle in ("monthly", "annual"):
                    expected = service.catalog.price(product["id"], plan["id"], currency, cycle)
                    assert Decimal(prices[cycle]) == expected
                    assert prices[cycle] == f"{expected:.2f}"
    assert counts(service.db) == before  # a query: no idempotency record, no audit row


def test_r3_a_removed_member_is_forbidden_and_their_pending_request_stays_decidable(
    service: CommandService,
) -> None:
    seed(service)
    request = submit(service)["result"]["request"]
    removed = send(service, "member.remove", {"account_id": "acme", "user_id": "acme-admin"})
    assert removed["ok"], removed
    refusal = error(submit(service, changes=SEATS))
    assert refusal["code"] == "forbidden"
    assert refusal["details"][0]["rule"] == "R3"
    assert refusal["details"][0]["field"] == "actor_id"
    cancel = {"request_id": request["request_id"], "actor_id": "acme-admin"}
    assert error(send(service, "request.cancel", cancel))["code"] == "forbidden"
    still = send(
        service, "request.get", {"request_id": request["request_id"], "actor_id": "acme-owner"}
    )
    assert still["result"]["request"]["state"] == "pending"
    assert still["result"]["request"]["requester_name"] == request["requester_name"]
    approved = decide(service, request["request_id"], "owner")
    assert approved["result"]["request"]["state"] == "approved"
    # Removing twice: not a member any more. Upserting again brings the member back.
    twice = send(service, "member.remove", {"account_id": "acme", "user_id": "acme-admin"})
    assert error(twice)["code"] == "unknown_member"
    back = send(service, "member.upsert", member("acme-admin", "admin"))
    assert back["ok"]
    assert back["result"]["created"] is True
    assert submit(service)["ok"]
