"""Importing what integrators import changes nothing in pika (no import-time patches)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SNAPSHOT = textwrap.dedent(
    """
    import importlib
    import pkgutil
    import sys

    import pika

    for info in pkgutil.walk_packages(pika.__path__, "pika."):
        try:
            importlib.import_module(info.name)
        except ImportError:  # adapters of event loops that are not installed (twisted, ...)
            pass


    def snapshot():
        seen = {}
        for name, module in list(sys.modules.items()):
            if name != "pika" and not name.startswith("pika."):
                continue
            for attr, value in vars(module).items():
                seen[(name, attr)] = value
                if isinstance(value, type) and value.__module__.startswith("pika"):
                    for key, member in vars(value).items():
                        seen[(name, attr, key)] = member
        return seen


    before = snapshot()
    import consumers.client  # noqa: F401

    after = snapshot()
    missing = object()
    changed = sorted(".".join(k) for k, v in before.items() if after.get(k, missing) is not v)
    print("\\n".join(changed))
    sys.exit(1 if changed else 0)
    """
)


def test_importing_the_client_changes_nothing_in_pika() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SNAPSHOT], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, (
        f"importing consumers.client changed pika:\n{done.stdout}{done.stderr}"
    )
