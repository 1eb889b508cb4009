"""The system under test of one scenario: its own vhost, its own database, and ``subreq
worker`` processes that never outlive it.

Every worker runs in its own process group (so a kill reaches the whole group) and is
started with ``PR_SET_PDEATHSIG``: if the test process itself dies, the kernel kills the
workers too. :meth:`Stack.close` kills and reaps every process ever started, whatever
happened; the vhost and the database are removed by the ``services`` context managers
that created them (see ``conftest.py``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import psycopg
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.integration.helpers import account, member
from workflow.app.service import CommandService
from workflow.domain.catalog import Catalog
from workflow.persistence.database import Database

SUBREQ = Path(sys.executable).with_name("subreq")
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child, after fork
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def libpq(url: str, database: str | None = None) -> str:
    """SQLAlchemy URL -> libpq URI, optionally of another database of the same server."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def rabbitmqctl(*args: str, timeout: float = 60) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=timeout
    )
    return done.stdout


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


class WorkerProcess:
    """One slot of ``subreq worker``: started, killed and restarted as the scenario says;
    every incarnation's output goes to the slot's log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.incarnations: list[subprocess.Popen[bytes]] = []

    def start(self) -> WorkerProcess:
        in_main = threading.current_thread() is threading.main_thread()
        with self.log_path.open("ab") as log:
            log.write(f"--- start {time.strftime('%H:%M:%S')} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # The death signal follows the *thread* that forked: only the main thread,
                # which lives as long as the test process, may ask for it.
                preexec_fn=_die_with_parent if in_main else None,
            )
        self.incarnations.append(self.process)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL to the process group, then reap: no clean shutdown of any kind."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        """Kill and reap every incarnation still running (idempotent)."""
        for process in self.incarnations:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)


class Stack:
    """A scenario's vhost, database and worker processes."""

    def __init__(self, amqp_url: str, database_url: str, workdir: Path) -> None:
        self.amqp_url = amqp_url
        self.database_url = database_url
        self.workdir = workdir
        self.db = Database(database_url)
        self.database = make_url(database_url).database or ""
        self.vhost = _vhost_of(amqp_url)
        self.workers: list[WorkerProcess] = []
        self.env: dict[str, str] = {
            k: v for k, v in os.environ.items() if not k.startswith("SUBREQ_")
        } | {
            "SUBREQ_AMQP_URL": amqp_url,
            "SUBREQ_DATABASE_URL": database_url,
            "SUBREQ_MAIL_DIR": str(workdir / "mail"),
            "SUBREQ_LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }

    def spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(
            name, [str(SUBREQ), "worker", *args], self.env | (env or {}), self.workdir
        )
        self.workers.append(worker)
        return worker.start()

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.alive()]

    def kill_one(self, rng: random.Random) -> WorkerProcess | None:
        """SIGKILL a random running worker and start it again at once."""
        running = self.alive()
        if not running:
            return None
        victim = rng.choice(running)
        victim.kill()
        victim.start()
        return victim

    def seed(self, catalog: Catalog, accounts: list[str]) -> None:
        """Accounts with an owner, an admin and an agent, straight through the service
        (no message ids, so they leave no idempotency records)."""
        service = CommandService(self.db, catalog)
        for start in range(0, len(accounts), 100):
            items: list[tuple[str, bytes, None]] = []
            for account_id in accounts[start : start + 100]:
                items.append(("account.upsert", _json(account(account_id)), None))
                for role in ("owner", "admin", "agent"):
                    body = member(f"{account_id}-{role}", role, account_id)
                    items.append(("member.upsert", _json(body), None))
            outcomes = service.handle_batch(items)
            assert all(o.json()["ok"] for o in outcomes), [o.json() for o in outcomes]

    def rows(self, query: str, **params: Any) -> list[Any]:
        with self.db.engine.connect() as conn:
            return list(conn.execute(text(query), params))

    def scalar(self, query: str, **params: Any) -> Any:
        with self.db.engine.connect() as conn:
            return conn.execute(text(query), params).scalar_one()

    def maintenance(self) -> psycopg.Connection[Any]:
        """An autocommit connection to the server's ``postgres`` database (not ours, so
        terminating our backends never terminates it)."""
        return psycopg.connect(
            libpq(self.database_url, "postgres"), autocommit=True, connect_timeout=5
        )

    def logs(self, limit: int = 6000) -> str:
        return "\n".join(f"--- {w.name} ---\n{w.log()[-limit:]}" for w in self.workers)

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.db.dispose()


def _vhost_of(url: str) -> str:
    path = urlsplit(url.split(",")[0]).path  # a cluster's addresses share one vhost
    return unquote(path[1:]) if len(path) > 1 else "/"


def _json(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)
