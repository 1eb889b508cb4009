"""How the client reads replies: results as the contract's models, refusals as the error
of their code, and anything else as ``UnexpectedReply`` (no services needed)."""

from __future__ import annotations

from typing import Any

import pytest

from consumers import replies
from consumers.replies import (
    REFUSALS,
    InvalidMessage,
    Refusal,
    RequestPending,
    UnexpectedReply,
    result_of,
)
from policies.decision import ErrorCode
from workflow.contract.envelopes import AccountUpserted, CatalogResult, RequestResult


def refusal(code: str, **detail: Any) -> dict[str, Any]:
    return {
        "ok": False,
        "error": {
            "code": code,
            "message": "no",
            "details": [{"code": code, "reason": "r"} | detail],
        },
    }


def test_every_error_code_of_the_contract_has_its_own_refusal() -> None:
    assert set(REFUSALS) == {str(code) for code in ErrorCode}
    for code, cls in REFUSALS.items():
        assert cls.code == code
        assert issubclass(cls, Refusal)
        with pytest.raises(cls) as raised:
            result_of("request.get", refusal(code), RequestResult)
        assert raised.value.code == code
        assert str(raised.value) == f"{code}: no"
        assert cls.__name__ in replies.__all__


def test_a_refusal_keeps_every_detail_and_the_pending_request() -> None:
    reply = refusal("request_pending", rule="R11", request_id="req-1")
    reply["error"]["details"].append({"code": "invalid_change", "reason": "x", "field": "a[0].b"})
    with pytest.raises(RequestPending) as raised:
        result_of("request.submit", reply, RequestResult)
    assert raised.value.request_id == "req-1"
    assert raised.value.rules == ["R11"]
    assert raised.value.fields == ["a[0].b"]
    assert [d.code for d in raised.value.details] == ["request_pending", "invalid_change"]


def test_invalid_message_names_the_fields_as_sent() -> None:
    with pytest.raises(InvalidMessage) as raised:
        result_of("request.decide", refusal("invalid_message", field="comment"), RequestResult)
    assert raised.value.fields == ["comment"]


def test_a_code_newer_than_the_client_is_still_a_refusal() -> None:
    with pytest.raises(Refusal) as raised:
        result_of("request.get", refusal("over_quota", rule="R99"), RequestResult)
    assert type(raised.value) is Refusal
    assert raised.value.code == "over_quota"
    assert raised.value.rules == ["R99"]


@pytest.mark.parametrize(
    "reply",
    [{"ok": False}, {"ok": False, "error": "boom"}, {"ok": True}, {"ok": True, "result": {}}],
)
def test_a_reply_of_another_shape_is_unexpected(reply: dict[str, Any]) -> None:
    with pytest.raises(UnexpectedReply):
        result_of("account.upsert", reply, AccountUpserted)


def test_an_ok_reply_is_parsed_into_the_commands_model() -> None:
    reply = {"ok": True, "result": {"account_id": "a", "created": False, "voided": ["r"]}}
    assert result_of("account.upsert", reply, AccountUpserted) == AccountUpserted(
        account_id="a", created=False, voided=["r"]
    )
    catalog = {"products": [], "currencies": ["USD"], "billing_cycles": ["monthly"]}
    parsed = result_of("catalog.get", {"ok": True, "result": {"catalog": catalog}}, CatalogResult)
    assert parsed.catalog.currencies == ["USD"]
