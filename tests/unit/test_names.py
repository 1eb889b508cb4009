"""Every name of the contract is spelled once, in ``workflow.contract.names``."""

from __future__ import annotations

import ast
from pathlib import Path

from workflow.contract import names
from workflow.contract.messages import COMMANDS
from workflow.contract.summaries import COMMAND_SUMMARIES, EVENT_SUMMARIES
from workflow.domain.lifecycle import MACHINE

ROOT = Path(__file__).resolve().parents[2]
NAMES_MODULE = ROOT / "workflow" / "contract" / "names.py"

SPELLED_ONCE = {
    value
    for key, value in vars(names).items()
    if key.isupper()
    and isinstance(value, str)
    and (value.startswith(("subreq.", "x-subreq-", "amq.")) or key.endswith("_HEADER"))
}


def test_commands_events_and_states_derive_from_the_names() -> None:
    assert tuple(COMMANDS) == names.COMMAND_NAMES
    assert tuple(COMMAND_SUMMARIES) == names.COMMAND_NAMES
    assert tuple(EVENT_SUMMARIES) == names.EVENT_TYPES
    assert set(names.EVENT_OF_STATE) == set(names.STATES)
    assert {s for s in MACHINE.states if s != "new"} == set(names.STATES)


def test_no_module_spells_an_exchange_queue_or_header_name_itself() -> None:
    assert "subreq.commands" in SPELLED_ONCE
    assert "x-subreq-error" in SPELLED_ONCE
    assert "x-delivery-count" in SPELLED_ONCE
    found = []
    for package in ("policies", "workflow", "consumers"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == NAMES_MODULE:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and node.value in SPELLED_ONCE:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not found, "spell these through workflow.contract.names:\n" + "\n".join(found)
