"""Hypothesis strategies for hostile commands: what a broken or malicious publisher sends.

A message is a routing key (every command of the contract, near misses, random text),
a body (random bytes, JSON that is not an object, bodies over 64 KiB, deep nesting,
encodings other than UTF-8, and the contract's bodies with wrong types, missing or
extra fields, forged roles, huge strings, SQL-looking ids, unicode edge cases and CR/LF
in names) and AMQP properties (content type and encoding, priority, type, app id,
timestamp, message ids of every shape, header tables with every field type pika
writes). Header values no Python client produces but any other language may (a
timestamp past the year 9999) are in ``RAW_FIELDS``, sent by a test of their own.

Ids in these bodies never name an account the harness creates: lookups always miss,
so nothing may be created, except accounts by an ``account.upsert`` the service judged
valid, whose ids all start with ``fz:``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import orjson
from hypothesis import strategies as st

from workflow.contract.messages import COMMANDS

ROUTING_KEYS = tuple(COMMANDS)
RESERVED = ("canary", "fz:")  # the harness's own account, and upserted fuzz accounts

SQLISH = [
    "' OR '1'='1",
    "'; DROP TABLE requests; --",
    "acct'); DELETE FROM members; --",
    '" OR ""="',
    "%",
    "_%_",
    "\\",
    "$$; SELECT pg_sleep(10); $$",
    "1 UNION SELECT key, reply FROM processed_commands",
    "{{7*7}}${7*7}",
    "../../etc/passwd",
    "<script>alert(1)</script>",
]
UNICODE_EDGES = [
    "\ufeffbom",
    "zero\u200bwidth",
    "rtl\u202eoverride",
    "e\u0301",
    "\u00e9",
    "\U0001f642",
    "\U0010ffff",
    "\uffff",
    "İı",
    "ß",
    "ǅ",
    "\u2028line\u2029",
    "\x7f\x1b[31m",
]
CRLF = [
    "Mallory\r\nBcc: victim@example.com",
    "a\rb",
    "a\nb",
    "x\r\n.\r\nMAIL FROM:<evil@example.com>",
    "=?utf-8?q?encoded?=",
    "\t tabs \t",
]
NUL = ["nul\x00inside", "\x00"]


def _not_reserved(value: str) -> bool:
    return not value.strip().startswith(RESERVED)


texts = st.one_of(
    st.sampled_from(SQLISH + UNICODE_EDGES + CRLF + NUL),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), min_size=120, max_size=400),
    st.just(""),
    st.just("   "),
)
ids = st.one_of(
    st.sampled_from(SQLISH + UNICODE_EDGES + CRLF + NUL),
    st.text(min_size=1, max_size=30),
    texts,
).filter(_not_reserved)
wrong_types = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.integers(-(2**63), 2**63 - 1), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(-(2**63), 2**63 - 1), max_size=3),
    st.just("x" * 5000),
)
forged = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["owner", "billing_admin", "admin"]),
        "roles": st.just(["owner", "billing_admin"]),
        "is_owner": st.just(True),
        "permissions": st.just(["billing", "*"]),
        "actor": st.just({"user_id": "canary-owner", "role": "owner"}),
        "__proto__": st.just({"admin": True}),
    },
)
change_items = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("add_seats"),
            "product": texts,
            "quantity": wrong_types | st.integers(-(2**63), 2**63 - 1),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.just("add_product"), "product": texts, "plan": texts},
        optional={"seats": wrong_types},
    ),
    st.fixed_dictionaries({"type": st.just("upgrade_plan"), "product": texts, "plan": texts}),
    st.fixed_dictionaries(
        {"type": st.sampled_from(["remove_seats", "cancel_account", "manage_invoice"])},
        optional={"product": texts},
    ),
    st.dictionaries(st.text(max_size=8), wrong_types, max_size=4),
    wrong_types,
)
changes = st.one_of(st.lists(change_items, max_size=4), st.lists(change_items, min_size=51))
emails = st.one_of(
    st.sampled_from(["a@b.example", "x\r\n@b.example", "<a@b>@c.example", "a@b", ""]), texts
)
subscriptions = st.fixed_dictionaries(
    {
        "currency": st.sampled_from(["USD", "EUR", "usd", "XXX"]) | texts,
        "billing_cycle": st.sampled_from(["monthly", "annual", "weekly"]),
        "products": st.lists(
            st.fixed_dictionaries(
                {
                    "product": texts,
                    "plan": texts,
                    "seats": wrong_types | st.integers(-(2**63), 2**63 - 1),
                }
            ),
            max_size=3,
        ),
    }
)

TEMPLATES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "account.upsert": st.fixed_dictionaries(
        {
            "account_id": texts.map(lambda s: f"fz:{s}"),
            "name": texts,
            "type": st.sampled_from(["sales_assisted", "self_service", "enterprise"]),
            "allows_subscription_changes": st.booleans() | wrong_types,
        },
        optional={"subscription": subscriptions},
    ),
    "member.upsert": st.fixed_dictionaries(
        {
            "account_id": ids,
            "user_id": ids,
            "name": texts,
            "email": emails,
            "role": st.sampled_from(["owner", "billing_admin", "admin", "agent", "root"]),
        },
        optional={"locale": st.sampled_from(["en", "it", "xx-XXXX", "../../en"]) | texts},
    ),
    "member.remove": st.fixed_dictionaries({"account_id": ids, "user_id": ids}),
    "request.preview": st.fixed_dictionaries(
        {"account_id": ids, "actor_id": ids, "changes": changes}
    ),
    "request.submit": st.fixed_dictionaries(
        {"account_id": ids, "actor_id": ids, "changes": changes}, optional={"note": texts}
    ),
    "request.decide": st.fixed_dictionaries(
        {
            "request_id": ids,
            "actor_id": ids,
            "decision": st.sampled_from(["approve", "reject", "APPROVE", "maybe"]),
        },
        optional={"comment": texts},
    ),
    "request.cancel": st.fixed_dictionaries(
        {"request_id": ids, "actor_id": ids}, optional={"reason": texts}
    ),
    "request.get": st.fixed_dictionaries({"request_id": ids, "actor_id": ids}),
    "request.list": st.fixed_dictionaries(
        {"account_id": ids, "actor_id": ids},
        optional={"state": st.sampled_from(["pending", "approved", "all"]) | texts},
    ),
    "catalog.get": st.just({}),
}


# The same commands within the schema: every lookup misses, so each must be refused.
short_ids = st.one_of(
    st.sampled_from(SQLISH + UNICODE_EDGES + CRLF[1:3] + NUL),
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=30),
).filter(lambda s: bool(s.strip()) and _not_reserved(s))
names = st.one_of(st.sampled_from(CRLF + UNICODE_EDGES + NUL), short_ids)
valid_changes = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.just("add_seats"),
                "product": st.sampled_from(["support", "guide"])
                | short_ids.filter(lambda s: len(s) <= 64),
                "quantity": st.integers(-5, 10**9),
            }
        ),
        st.fixed_dictionaries(
            {"type": st.just("upgrade_plan"), "product": st.just("support"), "plan": short_ids}
        ).filter(lambda item: len(item["plan"]) <= 64),
        st.fixed_dictionaries({"type": st.sampled_from(["remove_product", "downgrade_plan"])}),
    ),
    min_size=1,
    max_size=5,
)
SCHEMA_VALID: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "account.upsert": st.fixed_dictionaries(
        {
            "account_id": short_ids.map(lambda s: f"fz:{s}"),
            "name": names,
            "type": st.sampled_from(["sales_assisted", "self_service"]),
            "allows_subscription_changes": st.booleans(),
        }
    ),
    "member.upsert": st.fixed_dictionaries(
        {
            "account_id": short_ids,
            "user_id": short_ids,
            "name": names,
            "email": st.sampled_from(["a@b.example", "mallory@evil.example"]),
            "role": st.sampled_from(["owner", "billing_admin", "admin", "agent"]),
        }
    ),
    "member.remove": st.fixed_dictionaries({"account_id": short_ids, "user_id": short_ids}),
    "request.preview": st.fixed_dictionaries(
        {"account_id": short_ids, "actor_id": short_ids, "changes": valid_changes}
    ),
    "request.submit": st.fixed_dictionaries(
        {"account_id": short_ids, "actor_id": short_ids, "changes": valid_changes},
        optional={"note": names},
    ),
    "request.decide": st.fixed_dictionaries(
        {
            "request_id": short_ids,
            "actor_id": short_ids,
            "decision": st.sampled_from(["approve", "reject"]),
            "comment": names,
        }
    ),
    "request.cancel": st.fixed_dictionaries(
        {"request_id": short_ids, "actor_id": short_ids}, optional={"reason": names}
    ),
    "request.get": st.fixed_dictionaries({"request_id": short_ids, "actor_id": short_ids}),
    "request.list": st.fixed_dictionaries(
        {"account_id": short_ids, "actor_id": short_ids},
        optional={"state": st.sampled_from(["pending", "approved"])},
    ),
    "catalog.get": st.just({}),  # no fields: any JSON object is one
}


@st.composite
def mutated(draw: st.DrawFn, routing_key: str) -> dict[str, Any]:
    """A body of the routing key's shape (or another command's), then broken a bit."""
    shape = routing_key if routing_key in TEMPLATES else draw(st.sampled_from(ROUTING_KEYS))
    body = dict(draw(TEMPLATES[shape]))
    body |= draw(forged)
    for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
        key = draw(st.sampled_from(sorted(body) or ["account_id"]))
        how = draw(st.sampled_from(["drop", "retype", "long", "nest"]))
        if how == "drop":
            body.pop(key, None)
        elif how == "retype":
            body[key] = draw(wrong_types)
        elif how == "long":
            body[key] = "y" * draw(st.sampled_from([129, 201, 2001, 20_000]))
        else:
            body[key] = {"$ne": None, "nested": [body.get(key)]}
    return body


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


RAW_BODIES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'"a string"',
            b"42",
            b"true",
            b"{",
            b'{"account_id": "a"',
            b'{"account_id": NaN}',
            b'{"quantity": 1e400}',
            b'{"quantity": 123456789012345678901234567890}',
            b'{"account_id": "\\ud800", "actor_id": "x"}',
            b'{"account_id": "a", "account_id": "b", "actor_id": "c", "changes": []}',
            b"\xef\xbb\xbf{}",
            b'{"a": 1} trailing',
            b'{"a": 1 /* comment */}',
            '{"account_id": "café"}'.encode("latin-1"),
            '{"account_id": "x"}'.encode("utf-16"),
        ]
    ),
    st.integers(1000, 3000).map(lambda n: b'{"account_id": ' + _deep(n) + b"}"),
    st.integers(10, 200).map(lambda n: b'{"changes": ' + _deep(n) + b"}"),
    st.integers(65 * 1024, 80 * 1024).map(lambda n: b'{"note": "' + b"z" * n + b'"}'),
)


@dataclass(frozen=True)
class RawField:
    """An AMQP field value written as given (type octet and bytes), for values pika
    would never encode itself; see ``install_raw_fields``."""

    kind: bytes
    payload: bytes

    def __repr__(self) -> str:
        return f"RawField({self.kind!r}, {self.payload.hex()})"


RAW_FIELDS = [
    RawField(b"T", struct.pack(">Q", 2**63)),  # a timestamp far past the year 9999
    # (NaN and infinite floats are refused by RabbitMQ itself: 541 INTERNAL_ERROR)
    RawField(b"d", struct.pack(">d", 1e300)),
    RawField(b"D", bytes([255]) + struct.pack(">i", 2**31 - 1)),
]


def install_raw_fields(monkeypatch: Any) -> None:
    """Teach pika, in this process only, to write :class:`RawField` header values, and to
    read back a field it cannot decode (a timestamp past 9999) as a RawField instead of
    dropping the connection (the harness must survive what it sends)."""
    import pika.data

    encode, decode = pika.data.encode_value, pika.data.decode_value

    def encode_value(pieces: list[bytes], value: Any) -> int:
        if isinstance(value, RawField):
            pieces.append(value.kind + value.payload)
            return len(value.kind) + len(value.payload)
        return int(encode(pieces, value))

    def decode_value(encoded: bytes, offset: int) -> tuple[Any, int]:
        try:
            return decode(encoded, offset)  # type: ignore[no-any-return]
        except (OverflowError, ValueError, OSError):
            if encoded[offset : offset + 1] != b"T":
                raise
            return RawField(b"T", encoded[offset + 1 : offset + 9]), offset + 9

    monkeypatch.setattr(pika.data, "encode_value", encode_value)
    monkeypatch.setattr(pika.data, "decode_value", decode_value)


header_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.text(max_size=30),
        st.binary(max_size=30),
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(min_size=1, max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)
headers = st.one_of(
    st.none(),
    st.dictionaries(
        st.text(min_size=1, max_size=20).filter(lambda k: len(k.encode()) <= 255),
        header_values,
        max_size=4,
    ),
)


@dataclass(frozen=True)
class Hostile:
    routing_key: str
    body: bytes
    message_id_suffix: str
    properties: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        body = self.body if len(self.body) < 200 else self.body[:200] + b"..."
        return (
            f"routing_key={self.routing_key!r} body={body!r} ({len(self.body)} bytes) "
            f"message_id_suffix={self.message_id_suffix!r} properties={self.properties!r}"
        )


routing_keys = st.one_of(
    *[st.sampled_from(ROUTING_KEYS)] * 6,
    st.sampled_from(["", "#", "*", "request", "request.submit.now", "REQUEST.SUBMIT"]),
    st.sampled_from(ROUTING_KEYS).map(lambda k: f" {k}"),
    st.text(max_size=60).filter(lambda k: len(k.encode()) <= 255),
)


@st.composite
def hostile_messages(draw: st.DrawFn) -> Hostile:
    routing_key = draw(routing_keys)
    kind = draw(st.sampled_from(["raw", "broken", "broken", "schema", "schema"]))
    if kind == "raw":
        body = draw(RAW_BODIES)
    elif kind == "broken":
        body = orjson.dumps(draw(mutated(routing_key)))
    else:
        shape = routing_key if routing_key in SCHEMA_VALID else draw(st.sampled_from(ROUTING_KEYS))
        body = orjson.dumps(draw(SCHEMA_VALID[shape]) | draw(forged))
    properties: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "content_type": st.sampled_from(["text/plain", "application/xml", "", "a" * 255]),
                "content_encoding": st.sampled_from(["gzip", "utf-16", "identity"]),
                "delivery_mode": st.sampled_from([1, 2]),
                "priority": st.integers(0, 9),
                "type": st.text(max_size=20),
                "app_id": st.text(max_size=20),
                "timestamp": st.integers(0, 2**64 - 1),
                "headers": headers,
            },
        )
    )
    suffix = draw(
        st.one_of(
            st.just(""),
            st.sampled_from(SQLISH + UNICODE_EDGES + CRLF + NUL),
            st.text(max_size=20),
            st.just("m" * 220),
        ).filter(lambda s: len(s.encode()) <= 220)
    )
    return Hostile(routing_key, body, suffix, properties)


# Always sent first (Hypothesis' explicit phase), whatever the generator finds.
EXPLICIT = [
    Hostile("request.get", b'{"request_id": "r1", "actor_id": "a"}', "m" * 220),
    Hostile("request.get", b'{"request_id": "r1", "actor_id": "a"}', "nul\x00id"),
    Hostile("request.get", orjson.dumps({"request_id": "r\x00", "actor_id": "a"}), ""),
    Hostile(
        "member.upsert",
        orjson.dumps(
            {
                "account_id": "acme\x00",
                "user_id": "u",
                "name": "Mallory\r\nBcc: victim@example.com",
                "email": "a@b.example",
                "role": "owner",
            }
        ),
        "",
    ),
    Hostile("request.cancel\x00", b"{}", ""),
    Hostile(
        "account.upsert",
        orjson.dumps(
            {
                "account_id": "fz:'; DROP TABLE requests; --",
                "name": "Mallory\r\nBcc: victim@example.com",
                "type": "sales_assisted",
                "allows_subscription_changes": True,
            }
        ),
        "",
    ),
    Hostile("request.submit", b'{"account_id": ' + _deep(3000) + b"}", ""),
    Hostile("request.preview", b'{"note": "' + b"z" * (80 * 1024) + b'"}', ""),
    Hostile(
        "request.decide",
        orjson.dumps(
            {"request_id": "x", "actor_id": "canary-owner", "decision": "approve", "role": "owner"}
        ),
        "",
        {"headers": {"x-role": "owner", "x-actor-id": "canary-owner"}},
    ),
]
