"""The harness itself: a scenario that fails half way leaves no worker process, no vhost,
no database and no private PostgreSQL server behind."""

from __future__ import annotations

import os
import random
from pathlib import Path

import psycopg
import pytest

from consumers.notifier import STARTED
from tests import services
from tests.chaos.conftest import chaos_stack
from tests.chaos.private_postgres import available, private_postgres, processes_of
from tests.chaos.publisher import ResilientClient
from tests.chaos.stack import libpq, rabbitmqctl
from tests.integration.helpers import wait_until
from workflow.contract.names import COMMANDS_QUEUE
from workflow.domain.catalog import Catalog

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_scenario_that_fails_half_way_leaves_nothing_behind(
    tmp_path: Path, catalog: Catalog
) -> None:
    pids: list[int] = []
    names: dict[str, str] = {}

    def scenario_that_fails() -> None:
        with chaos_stack(tmp_path) as stack:
            names.update(vhost=stack.vhost, database=stack.database, url=stack.database_url)
            stack.seed(catalog, ["cleanup"])
            client = ResilientClient(stack.amqp_url, "cleanup")
            pids.extend(stack.spawn(f"worker-{n}").pid for n in range(2))
            try:
                wait_until(
                    lambda: client.queue_state(COMMANDS_QUEUE)[1] == 2,
                    timeout=60,
                    what="two workers connected to the vhost and the database",
                )
            finally:
                client.close()
            stack.kill_one(random.Random(0))  # a restarted incarnation must go too
            pids.extend(w.pid for w in stack.workers)
            raise RuntimeError("deliberate failure in the middle of a scenario")

    with pytest.raises(RuntimeError, match="deliberate"):
        scenario_that_fails()
    assert names, "the stack never started"
    assert not [pid for pid in pids if _running(pid)], "worker processes left running"
    vhosts = rabbitmqctl("list_vhosts", "name").split()
    assert names["vhost"] not in vhosts, "the scenario's vhost was left behind"
    with psycopg.connect(libpq(names["url"], "postgres"), autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (names["database"],)
        ).fetchone()
    assert left == (0,), "the scenario's database was left behind"


def test_a_failing_scenario_on_a_private_server_leaves_no_server_behind(
    tmp_path: Path, catalog: Catalog
) -> None:
    """The private PostgreSQL server of the restart scenario, restarted once and with a
    worker connected, is stopped and its folder removed when the scenario fails."""
    problem = available()
    if problem:
        services.service_unavailable("a private PostgreSQL server", problem)
        pytest.skip(problem)
    folder: list[Path] = []
    pids: list[int] = []
    port: list[int] = []

    def scenario_that_fails() -> None:
        with private_postgres() as server, chaos_stack(tmp_path, server.url) as stack:
            folder.append(server.folder)
            port.append(server.port)
            stack.seed(catalog, ["cleanup"])
            worker = stack.spawn("worker-0")
            wait_until(lambda: STARTED in worker.log(), timeout=60, what="the worker's notifier")
            server.restart()
            assert server.process is not None
            assert server.running()
            pids.append(server.process.pid)
            pids.extend(processes_of(server.folder))
            raise RuntimeError("deliberate failure in the middle of a scenario")

    with pytest.raises(RuntimeError, match="deliberate"):
        scenario_that_fails()
    assert len(pids) > 1, "the private server never ran"
    assert not [pid for pid in pids if _running(pid)], "the private server's processes were left"
    assert not folder[0].exists(), "the private server's folder was left"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(f"postgresql://postgres@127.0.0.1:{port[0]}/postgres", connect_timeout=2)
