"""The figures of each scenario: printed (``-s``), attached to the test report as a user
property (JUnit XML), and listed in the terminal summary by ``conftest.py``, so CI shows
them without ``-s``, whether the scenario passed or failed."""

from __future__ import annotations

import json
from typing import Any

import pytest

FIGURES = pytest.StashKey[list[tuple[str, str, dict[str, Any]]]]()


def line(figures: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in figures.items())


def report(request: pytest.FixtureRequest, scenario: str, figures: dict[str, Any]) -> None:
    print(f"\n[chaos] {scenario}: {line(figures)}")
    request.node.user_properties.append(("chaos_figures", json.dumps(figures, default=str)))
    request.config.stash.setdefault(FIGURES, []).append((request.node.nodeid, scenario, figures))


def summary(terminalreporter: Any, config: pytest.Config) -> None:
    found = config.stash.get(FIGURES, [])
    if not found:
        return
    terminalreporter.section("chaos figures")
    for nodeid, scenario, figures in found:
        outcome = "passed"
        for report_ in terminalreporter.stats.get("failed", []):
            if report_.nodeid == nodeid:
                outcome = "FAILED"
        terminalreporter.write_line(f"{scenario} [{outcome}]: {line(figures)}")
