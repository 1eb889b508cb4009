"""String header tables (the ``traceparent`` of traced replies and events) are encoded by the
worker's one-step encoder (``consumers.amqp.patches``) to exactly pika's bytes; every other
table, and every name pika refuses, is left to pika."""

from __future__ import annotations

from typing import Any

import pika.data
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pika import exceptions

from consumers.amqp import patches


@pytest.fixture(autouse=True)
def _patched() -> None:
    patches.apply()


def encoded(encode: Any, table: Any) -> tuple[bytes, int]:
    pieces: list[bytes] = []
    size = encode(pieces, table)
    return b"".join(pieces), size


def plain() -> Any:
    return pika.data.encode_table.__wrapped__


names = st.text(max_size=80)
values = st.one_of(
    st.text(max_size=300),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.binary(max_size=20),
    st.none(),
    st.dictionaries(names, st.text(max_size=20), max_size=3),
)


def test_the_worker_encodes_string_tables_itself() -> None:
    assert pika.data.encode_table is not plain()


@given(st.dictionaries(names, st.text(max_size=300), max_size=6))
def test_string_tables_are_pikas_bytes(table: dict[str, str]) -> None:
    ours = encoded(pika.data.encode_table, table)
    assert ours == encoded(plain(), table)
    assert ours[1] == len(ours[0])
    assert pika.data.decode_table(ours[0], 0) == (table, len(ours[0]))


@given(st.dictionaries(names, values, max_size=6))
def test_any_other_table_is_pikas_bytes(table: dict[str, Any]) -> None:
    assert encoded(pika.data.encode_table, table) == encoded(plain(), table)


def test_trace_headers_round_trip_through_properties() -> None:
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    properties = pika.BasicProperties(content_type="application/json", headers=headers)
    again = pika.BasicProperties()
    again.decode(b"".join(properties.encode()))
    assert again.headers == headers
    assert again.content_type == "application/json"


def test_a_name_pika_refuses_is_refused_the_same_way() -> None:
    with pytest.raises(exceptions.ShortStringTooLong):
        encoded(pika.data.encode_table, {"x" * 256: "value"})
    many = {f"name-{i}": "v" for i in range(2 * patches.KEYS_KEPT)}  # past the names kept
    assert encoded(pika.data.encode_table, many) == encoded(plain(), many)
    assert encoded(pika.data.encode_table, None) == encoded(plain(), None) == (b"\0\0\0\0", 4)
