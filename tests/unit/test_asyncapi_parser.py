"""The official AsyncAPI parser accepts docs/asyncapi.yaml, and every example fits its schemas.

``tools/node/validate-asyncapi.mjs`` runs ``@asyncapi/parser`` (pinned by
``tools/node/package-lock.json``, installed by ``make node``) and checks each message
example against its payload and headers schemas with the ajv the parser ships. Without
``node`` or ``tools/node/node_modules`` these tests skip, except under ``CI=true``, where
they fail: CI must never skip the parser.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"
NODE_DIR = ROOT / "tools" / "node"
SCRIPT = NODE_DIR / "validate-asyncapi.mjs"
SEVERITIES = {0: "error", 1: "warning", 2: "info", 3: "hint"}


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        missing = "node is not on PATH"
    elif not (NODE_DIR / "node_modules" / "@asyncapi" / "parser").is_dir():
        missing = "tools/node/node_modules has no @asyncapi/parser: run `make node`"
    else:
        return node
    if os.environ.get("CI") == "true":
        pytest.fail(f"{missing} (CI=true: the AsyncAPI parser must run)", pytrace=False)
    pytest.skip(missing)


def validate(path: Path) -> tuple[int, dict[str, Any]]:
    """The script's exit code and report for the document at ``path``."""
    done = subprocess.run(
        [_node(), str(SCRIPT), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), f"the validator could not run:\n{done.stderr}"
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def shown(report: dict[str, Any]) -> str:
    lines = [
        f"{SEVERITIES.get(d['severity'], d['severity'])} {d['code']} at {d['path'] or '/'}: "
        f"{d['message']}"
        for d in report["diagnostics"]
    ]
    lines += [
        f"example {e['example']!r} of {e['message']} ({e['part']}): {'; '.join(e['errors'])}"
        for e in report["examples"]
    ]
    return "\n".join(lines) or "nothing"


@pytest.fixture(scope="module")
def checked() -> tuple[int, dict[str, Any]]:
    return validate(DOCUMENT)


def test_the_parser_reports_no_error_and_no_warning(checked: tuple[int, dict[str, Any]]) -> None:
    _, report = checked
    serious = [d for d in report["diagnostics"] if d["severity"] <= 1]
    assert not serious, "the AsyncAPI parser says:\n" + shown(report)


def test_the_parser_has_no_info_or_hint_either(checked: tuple[int, dict[str, Any]]) -> None:
    _, report = checked
    assert not report["diagnostics"], "the AsyncAPI parser says:\n" + shown(report)


def test_every_example_fits_its_messages_payload_and_headers_schemas(
    checked: tuple[int, dict[str, Any]],
) -> None:
    code, report = checked
    assert not report["examples"], "examples that do not fit their schemas:\n" + shown(report)
    messages = yaml.safe_load(DOCUMENT.read_text())["components"]["messages"]
    parts = sum(
        ("payload" in example) + ("headers" in example)
        for message in messages.values()
        for example in message["examples"]
    )
    assert report["checked"] == parts, "every example's payload and headers were checked"
    assert code == 0


def _broken(tmp_path: Path, damage: Callable[[dict[str, Any]], None]) -> tuple[int, dict[str, Any]]:
    doc = yaml.safe_load(DOCUMENT.read_text())
    damage(doc)
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(yaml.safe_dump(doc))
    return validate(broken)


def test_an_invalid_document_or_an_old_version_is_reported(tmp_path: Path) -> None:
    """The parser checks above can fail."""

    def damage(doc: dict[str, Any]) -> None:
        doc["asyncapi"] = "3.0.0"
        doc["channels"]["requestGet"]["servers"] = [{"$ref": "#/servers/nowhere"}]

    code, report = _broken(tmp_path, damage)
    assert code == 1
    codes = {(d["severity"], d["code"]) for d in report["diagnostics"]}
    assert (2, "asyncapi-latest-version") in codes, shown(report)
    assert (0, "invalid-ref") in codes, shown(report)


def test_an_example_that_does_not_fit_its_schema_is_reported(tmp_path: Path) -> None:
    """The example check above can fail, for a payload and for headers."""

    def damage(doc: dict[str, Any]) -> None:
        messages = doc["components"]["messages"]
        messages["requestGet"]["examples"][0]["payload"].pop("actor_id")
        messages["requestSubmitted"]["examples"][0]["payload"]["occurred_at"] = "yesterday"
        messages["deadLetter"]["examples"][0]["headers"]["x-subreq-replays"] = "twice"

    code, report = _broken(tmp_path, damage)
    assert code == 1
    assert not report["diagnostics"], shown(report)
    failed = {(e["message"], e["part"]) for e in report["examples"]}
    expected = {
        ("requestGet", "payload"),
        ("requestSubmitted", "payload"),
        ("deadLetter", "headers"),
    }
    assert failed == expected, shown(report)
