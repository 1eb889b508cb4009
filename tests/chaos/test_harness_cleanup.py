"""The harness itself: a scenario that fails half way leaves no worker process, no vhost,
no database, no private PostgreSQL server and no node, folder or process of a private
RabbitMQ cluster behind."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from consumers.notifier import STARTED
from tests import services
from tests.chaos import cluster as private_cluster
from tests.chaos import private_postgres as private_pg
from tests.chaos.cluster import Cluster, ctl
from tests.chaos.conftest import chaos_stack
from tests.chaos.private_postgres import private_postgres, processes_of
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
    problem = private_pg.available()
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


HOLD_A_NODE = """
import sys, time
from tests.chaos.cluster import Cluster
cluster = Cluster(size=1).start()
print(cluster.base, cluster.nodes[0].pid(), flush=True)
time.sleep(600)
"""


def test_a_private_cluster_is_removed_when_its_scenario_fails_or_its_process_is_killed(
    tmp_path: Path,
) -> None:
    """The same start and removal as the three-node cluster of ``test_cluster.py``, on one
    node each: one cluster whose scenario fails half way, in this process; another whose
    test process dies by SIGKILL, in a child (there the reaper removes it)."""
    problem = private_cluster.available()
    if problem:
        services.service_unavailable("a private RabbitMQ node", problem)
        pytest.skip(problem)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_NODE],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    seen: list[tuple[Path, int]] = []

    def scenario_that_fails() -> None:
        with Cluster(size=1) as cluster:
            node = cluster.nodes[0]
            pid = node.pid()
            assert pid is not None
            seen.append((cluster.base, pid))
            assert ctl(node.name, "eval", "ok.").strip() == "ok"
            raise RuntimeError("deliberate failure in the middle of a scenario")

    try:
        with pytest.raises(RuntimeError, match="deliberate"):
            scenario_that_fails()
        ((folder, node_pid),) = seen
        assert not _running(node_pid), "the node of a failed scenario still runs"
        assert not folder.exists(), "its folder was left behind"

        assert holder.stdout is not None
        base, pid = holder.stdout.readline().split()
        assert _running(int(pid)), "the other process's node never ran"
        assert Path(base).exists()
        holder.kill()  # SIGKILL: no teardown of any kind in that process
        holder.wait(10)
        wait_until(
            lambda: not _running(int(pid)) and not Path(base).exists(),
            timeout=30,
            what="the reaper to remove the cluster of a killed test process",
        )
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        assert holder.stdout is not None
        holder.stdout.close()
