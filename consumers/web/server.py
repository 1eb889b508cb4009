"""``subreq web``: the console served by uvicorn, beside the worker's broker and database.

Actions run in this process through the same ``CommandService`` as the worker's; their
events go to the outbox, which the worker's relay publishes, and the worker's notifier
sends the emails (adding the links)."""

from __future__ import annotations

import uvicorn

from consumers.web.app import create_app
from consumers.web.console import Console
from workflow.app.service import CommandService
from workflow.domain.catalog import load_catalog
from workflow.errors import ConfigurationError
from workflow.persistence.database import Database
from workflow.settings import Settings


def build(settings: Settings, db: Database) -> Console:
    if settings.web_secret is None:
        raise ConfigurationError(
            "SUBREQ_WEB_SECRET: required for subreq web (at least 32 bytes, e.g. from "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    catalog = load_catalog(settings.catalog)
    service = CommandService(
        db,
        catalog,
        notify_billing_admins=settings.notify_billing_admins,
        dedupe_window=settings.dedupe_window,
    )
    return Console(
        db,
        service,
        catalog,
        settings.web_secret.get_secret_value(),
        public_url=settings.public_url,
        request_ttl=settings.request_ttl,
    )


def serve(console: Console, host: str, port: int) -> None:
    uvicorn.run(
        create_app(console),
        host=host,
        port=port,
        log_level="info",
        access_log=False,  # decision-link paths carry tokens: never in a log (C3)
        server_header=False,
        proxy_headers=False,
        limit_concurrency=200,
    )
