"""Sizes of the chaos scenarios, read from ``SUBREQ_CHAOS_*`` variables.

The defaults are the CI size: every scenario runs for real, only smaller. The larger run
of ``tests/chaos/README.md`` sets the same variables higher; nothing is skipped by size.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Sizes:
    commands: int = 800
    """Commands per load scenario (kills, drops, database faults; half for SMTP)."""
    accounts: int = 100
    """Accounts the commands are spread over (one command in flight per account)."""
    seconds: float = 15.0
    """How long the load of a scenario lasts; faults are injected during it."""
    workers: int = 3
    """``subreq worker`` processes of the kill scenario."""
    kill_every: float = 2.0
    drop_every: float = 4.0
    db_fault_every: float = 2.5
    db_outage: float = 3.0
    """Seconds the test database refuses connections once mid-load."""
    smtp_down: float = 5.0
    cluster_commands: int = 500
    """Commands of the cluster scenario (a node killed and restarted, then one partitioned)."""
    cluster_seconds: float = 20.0
    """How long its load lasts: long enough for the kill, the restart and the partition."""
    node_down: float = 3.0
    """Seconds the killed node stays down before it is started again."""
    partition: float = 5.0
    """Seconds one node is cut off from the others."""
    alarm_commands: int = 300
    """Commands of the resource alarm scenario."""
    alarm_seconds: float = 12.0
    """How long its load lasts."""
    alarm: float = 4.0
    """Seconds the memory alarm blocks publishing, mid-load."""
    examples: int = 200
    """Hypothesis examples of hostile input."""
    settle: float = 120.0
    """Seconds allowed, after the load, for every reply, event and email to arrive."""
    seed: int = 0
    """Random seed of the workloads; 0 (default): a new one, printed with the figures."""


def _parse(name: str, kind: type, raw: str) -> object:
    try:
        if kind is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        value = kind(raw)
    except ValueError:
        raise ValueError(f"SUBREQ_CHAOS_{name.upper()}={raw!r} is not a {kind.__name__}") from None
    if value < 0 or (name != "seed" and value == 0):  # type: ignore[operator]
        raise ValueError(f"SUBREQ_CHAOS_{name.upper()}={raw!r} must be positive")
    return value


def load_sizes() -> Sizes:
    """The sizes, each overridable by ``SUBREQ_CHAOS_<FIELD>`` (e.g. SUBREQ_CHAOS_COMMANDS)."""
    values: dict[str, object] = {}
    types = {"int": int, "float": float, "bool": bool}
    for f in fields(Sizes):
        raw = os.environ.get(f"SUBREQ_CHAOS_{f.name.upper()}")
        if raw is not None and raw.strip():
            values[f.name] = _parse(f.name, types[str(f.type)], raw.strip())
    if not values.get("seed"):
        values["seed"] = secrets.randbelow(2**31) + 1
    return Sizes(**values)  # type: ignore[arg-type]
