"""catalog.get: what an integrator needs to build a change form and price it."""

from __future__ import annotations

from typing import Any

from workflow.app.context import CommandContext
from workflow.contract.messages import CatalogGet


def get_catalog(cmd: CatalogGet, ctx: CommandContext) -> dict[str, Any]:
    return {"catalog": ctx.catalog.view()}
