"""Package data ships with the installed distribution."""

from __future__ import annotations

from importlib.resources import files


def test_workflow_catalog_is_installed() -> None:
    catalog = files("workflow.domain") / "data" / "catalog.json"
    assert catalog.is_file(), f"{catalog} is missing: check [tool.setuptools.package-data]"
