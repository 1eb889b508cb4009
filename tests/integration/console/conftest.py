"""The console's end-to-end fixtures: a real ``subreq worker`` (consumer, relay, notifier,
sweeper) and ``subreq web`` on the session's PostgreSQL database and a vhost of their own,
an SMTP sink, and one Chromium for the whole session, driven by Playwright.

Chromium is Debian's ``/usr/bin/chromium`` (Playwright's own download does not work here):
without it these tests are skipped, or fail under ``CI=true``."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from consumers.notifier import STARTED as NOTIFIER_STARTED
from tests import services
from tests.integration.helpers import wait_until
from tests.integration.notifications.smtp import SmtpServer
from tests.integration.notifications.support import url_of
from tests.smtpd import free_port
from workflow.app.service import CommandService
from workflow.domain.catalog import Catalog
from workflow.persistence.database import Database
from workflow.persistence.tables import metadata

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SUBREQ = Path(sys.executable).with_name("subreq")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"


@dataclass
class Stack:
    """The running installation the browser talks to."""

    url: str
    db: Database
    service: CommandService
    smtp: SmtpServer
    logs: dict[str, Path]


def _start(
    name: str, args: list[str], env: dict[str, str], workdir: Path
) -> subprocess.Popen[bytes]:
    log = (workdir / f"{name}.log").open("wb")
    try:
        return subprocess.Popen(
            [str(SUBREQ), *args], env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
        )
    finally:
        log.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@pytest.fixture(scope="package")
def stack(postgres_database: Database, catalog: Catalog) -> Iterator[Stack]:
    base = os.environ.get("SUBREQ_TEST_AMQP_URL", services.DEFAULT_AMQP_URL)
    with postgres_database.engine.begin() as conn:
        conn.execute(text("TRUNCATE " + ", ".join(t.name for t in metadata.sorted_tables)))
    workdir = Path(tempfile.mkdtemp(prefix="subreq-console-"))
    smtp = SmtpServer()
    smtp.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with services.rabbitmq_vhost(base) as amqp_url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUBREQ_")}
        env |= {
            "SUBREQ_AMQP_URL": amqp_url,
            "SUBREQ_DATABASE_URL": url_of(postgres_database),
            "SUBREQ_SMTP_URL": smtp.url,
            "SUBREQ_PUBLIC_URL": url,
            "SUBREQ_WEB_PORT": str(port),
            "SUBREQ_WEB_SECRET": secrets.token_urlsafe(32),
        }
        worker = _start("worker", ["worker"], env, workdir)
        web = _start("web", ["web", "--host", "127.0.0.1"], env, workdir)
        logs = {"worker": workdir / "worker.log", "web": workdir / "web.log"}
        try:
            wait_until(
                lambda: NOTIFIER_STARTED in logs["worker"].read_text(),
                timeout=30,
                what="the worker's notifier",
            )
            wait_until(lambda: _answers(url), timeout=30, what="subreq web")
            yield Stack(
                url, postgres_database, CommandService(postgres_database, catalog), smtp, logs
            )
        finally:
            _stop(web)
            _stop(worker)
            smtp.stop()
            for name, path in logs.items():
                print(f"--- {name} log tail ---")
                print(path.read_text(errors="replace")[-4000:])
            shutil.rmtree(workdir, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/signin", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """One browser for the session (each test opens its own contexts)."""
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: apt-get install -y chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: the browser tests must run)", pytrace=False)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    # launch() starts Chromium on a fresh temporary profile of its own (the
    # --user-data-dir it passes), removed when the browser closes; each test's people
    # get contexts of their own in it, with separate cookies.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
