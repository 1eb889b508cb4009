"""Log records: JSON with ids only, or readable text with the ids appended."""

from __future__ import annotations

import logging

import orjson

from consumers.logs import JsonFormatter, TextFormatter


def record(**extra: object) -> logging.LogRecord:
    entry = logging.LogRecord(
        "consumers.consumer", logging.INFO, __file__, 1, "command refused: %s", ("forbidden",), None
    )
    entry.__dict__.update(extra)
    return entry


def test_json_lines_carry_the_ids_and_nothing_else() -> None:
    line = JsonFormatter().format(
        record(
            command="request.submit",
            message_id="m-1",
            correlation_id="c-1",
            account_id="acme",
            request_id=None,
            body=b'{"name": "secret"}',
        )
    )
    entry = orjson.loads(line)
    assert entry["message"] == "command refused: forbidden"
    assert entry["level"] == "INFO"
    assert (entry["command"], entry["message_id"], entry["correlation_id"]) == (
        "request.submit",
        "m-1",
        "c-1",
    )
    assert entry["account_id"] == "acme"
    assert "request_id" not in entry
    assert "secret" not in line


def test_text_lines_append_the_ids() -> None:
    line = TextFormatter().format(record(command="request.submit", message_id="m-1"))
    assert line.endswith("[command=request.submit message_id=m-1]")
