"""From a delivery's routing key, body and ``message_id`` to a validated command and its
idempotency key, or to the reason the message is unusable (contract: Dead letters)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from pydantic import ValidationError

from policies.decision import Decision, ErrorCode
from workflow.contract.messages import ADAPTERS, BLAMED, BODY_DEDUPED
from workflow.errors import Invalid

MAX_PLAIN_KEY = 150
"""Longer message ids are stored as their SHA-256 (the key column holds 200 characters)."""

BOM = b"\xef\xbb\xbf"
"""A UTF-8 byte-order mark, which some producers put first and JSON parsers refuse."""

TAG = "type"
"""The field that says which kind of change item an item is."""
TAG_ERRORS = frozenset({"union_tag_invalid", "union_tag_not_found"})

MAX_BODY_BYTES = 64 * 1024
"""Larger bodies are refused unread: no command of the contract comes near this size."""


def encode(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def error_reply(decision: Decision) -> dict[str, Any]:
    return {
        "ok": False,
        "error": {
            "code": str(decision.code),
            "message": decision.message,
            "details": [d.as_detail() for d in decision.denials],
        },
    }


def _invalid(reason: str, field_: str | None = None) -> Invalid:
    return Invalid(Decision.deny(None, ErrorCode.INVALID_MESSAGE, reason, field_))


def parse(routing_key: str, body: bytes | str | dict[str, Any]) -> Any:
    """The validated command model, or :class:`Invalid` saying which field is wrong."""
    adapter = ADAPTERS.get(routing_key)
    if adapter is None:
        known = ", ".join(sorted(ADAPTERS))
        raise _invalid(f"unknown routing key {routing_key!r}; commands are: {known}")
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    if isinstance(body, bytes):
        body = body.removeprefix(BOM)
        if len(body) > MAX_BODY_BYTES:
            raise _invalid(f"body of {len(body)} bytes exceeds the limit of {MAX_BODY_BYTES}")
        try:
            loaded = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise _invalid(f"body is not UTF-8 JSON: {exc}") from None
        if b"\\u0000" in body and _has_nul(loaded):
            raise _invalid("strings must not contain NUL characters (\\u0000)")
        body = loaded
    elif _has_nul(body):
        raise _invalid("strings must not contain NUL characters (\\u0000)")
    if not isinstance(body, dict):
        raise _invalid(f"body must be a JSON object, not {type(body).__name__}")
    try:
        return adapter.validate_python(body)
    except ValidationError as exc:
        denials = []
        for err in exc.errors(include_url=False):
            # A validator that judges one field by another names the one it blames.
            blamed = (err.get("ctx") or {}).get(BLAMED)
            loc = err["loc"] if blamed is None else (*err["loc"], blamed)
            where = body_path(loc, body, tag=err["type"] in TAG_ERRORS)
            denials.append(
                Decision.deny(
                    "R19" if err["type"] == "R19" else None,
                    ErrorCode.INVALID_MESSAGE,
                    f"{where or 'body'}: {err['msg']}",
                    where or None,
                )
            )
        raise Invalid(Decision.combine(denials)) from None


def _has_nul(value: Any) -> bool:
    """No database stores a NUL in text; such a message is refused, never half-written."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def body_path(loc: tuple[int | str, ...], body: Any, *, tag: bool = False) -> str:
    """Where in the body as sent a validation error is: ``changes[0].quantity``.

    Pydantic's location also names the member of a tagged union it tried
    (``changes[0].add_seats.quantity``); that is no key of the body, so it is left out.
    With ``tag``, the error is about the union's tag itself: the path ends at ``type``."""
    out = ""
    node = body
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            continue
        if isinstance(node, dict) and part not in node and node.get(TAG) == part:
            continue  # the union member's name, not a field
        out += f".{part}" if out else part
        node = node.get(part) if isinstance(node, dict) else None
    if tag:
        out += f".{TAG}" if out else TAG
    return out


def dedupe_key(
    routing_key: str, body: bytes | str | dict[str, Any], message_id: str | None
) -> str | None:
    """``message_id`` when given; else a body hash for state-changing ``request.*`` commands."""
    if message_id:
        if len(message_id) <= MAX_PLAIN_KEY and "\x00" not in message_id:
            return f"id:{message_id}"
        # Too long for the key column, or unstorable: its digest is as unique.
        raw_id = message_id.encode("utf-8", "surrogatepass")
        return "idh:" + hashlib.sha256(raw_id).hexdigest()
    if routing_key not in BODY_DEDUPED:
        return None
    raw = (
        body.removeprefix(BOM)
        if isinstance(body, bytes)
        else (body.encode() if isinstance(body, str) else encode(body))
    )
    return "sha256:" + hashlib.sha256(routing_key.encode() + b"\n" + raw).hexdigest()
