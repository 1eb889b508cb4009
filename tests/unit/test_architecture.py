"""The import-linter contracts in pyproject.toml hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _lint_imports() -> str:
    # import-linter 2.x has no ``python -m`` entry point; its console script sits next to
    # the interpreter of the environment it was installed into.
    beside = Path(sys.executable).with_name("lint-imports")
    if beside.exists():
        return str(beside)
    found = shutil.which("lint-imports")
    assert found, "lint-imports not found: install the project with its [test] extra"
    return found


def test_import_contracts_are_kept() -> None:
    result = subprocess.run(
        [_lint_imports()],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"lint-imports failed:\n{result.stdout}\n{result.stderr}"
