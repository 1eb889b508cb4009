"""A private RabbitMQ cluster on this machine: three ``rabbitmq-server`` nodes beside the
system's ``rabbit@localhost``, which is never touched.

Each node has a name of its own (``rtN-<token>@localhost``), free ports (AMQP and
distribution), and a folder of its own under one temporary base folder, owned by the
``rabbitmq`` user (the Debian wrapper drops to it): an env file overriding
``/etc/rabbitmq/rabbitmq-env.conf``, a ``rabbitmq.conf`` and an empty plugins file; its
database, logs and pid file live there too. Nodes 2..N join node 1
(``stop_app``, ``join_cluster``, ``start_app``).

The nodes run with ``cluster_partition_handling = pause_minority``, RabbitMQ's advice for
three nodes: a node cut off from the others pauses (its clients are disconnected and fail
over) instead of serving a minority that can commit nothing.

Faults: ``kill`` (SIGKILL to the node's beam process), ``start`` again, ``partition``
(the node given a wrong Erlang cookie for its peers and disconnected: neither side can
connect to the other until ``heal`` restores it), ``alarm`` (the memory watermark set so
low that the node raises its memory alarm, which blocks publishers cluster-wide).

Removal: :meth:`Cluster.close` kills every node's beam process (by the pid in its pid
file, checked against the pid file named in its environment) and removes the base
folder, whatever happened. A reaper process (``tests.chaos.reaper``) started with the
cluster does the same if the test process dies without closing it (SIGKILL included):
it waits for the end of a pipe only the test process holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

OWNER = "rabbitmq"
START_TIMEOUT = 90.0
"""Seconds a node may take to boot on a busy 2-core machine (about 15 when quiet)."""
DEFAULT_WATERMARK = "0.4"
ALARM_WATERMARK = "0.0000001"
"""A memory high watermark below what any node uses: the alarm goes off at once."""
PARTITION_COOKIE = "subreq_chaos_partition"

ENV_FILE = """NODENAME={node}
ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS="-kernel inet_dist_use_interface {{127,0,0,1}}"
"""
CONFIG = """listeners.tcp.local = 127.0.0.1:{port}
cluster_partition_handling = pause_minority
"""


class ClusterError(RuntimeError):
    pass


def available() -> str | None:
    """Why no private node can be started here, or None."""
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        return "rabbitmq-server and rabbitmqctl are not installed"
    try:
        pwd.getpwnam(OWNER)
    except KeyError:
        return f"there is no {OWNER} user to own the nodes' folders"
    if os.geteuid() != 0:
        return "starting nodes as the rabbitmq user needs root"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ctl(node: str, *args: str, timeout: float = 60, tool: str = "rabbitmqctl") -> str:
    """``rabbitmqctl -n node ...`` (or another CLI tool); its output, or ClusterError."""
    try:
        done = subprocess.run(
            [tool, "-q", "-n", node, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ClusterError(f"{tool} -n {node} {' '.join(args)}: no answer in {timeout} s") from None
    if done.returncode != 0:
        raise ClusterError(
            f"{tool} -n {node} {' '.join(args)} exited {done.returncode}: "
            f"{(done.stderr or done.stdout).strip()[-500:]}"
        )
    return done.stdout


def beam_pid(folder: Path) -> int | None:
    """The pid of the node whose folder is ``folder``, if it runs: from its pid file, and
    only if that process's environment names the pid file (a reused pid is not ours)."""
    try:
        pid = int((folder / "pid").read_text().strip())
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if f"RABBITMQ_PID_FILE={folder / 'pid'}".encode() in environ else None


def kill_nodes(base: Path) -> list[int]:
    """SIGKILL every running node under ``base``; the pids killed."""
    killed = []
    for folder in sorted(base.glob("rt*")):
        pid = beam_pid(folder)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
    return killed


def remove(base: Path) -> None:
    """Every node under ``base`` killed and gone, then the folder removed."""
    killed = kill_nodes(base)
    deadline = time.monotonic() + 10
    while killed and time.monotonic() < deadline:
        killed = [pid for pid in killed if Path(f"/proc/{pid}").exists()]
        time.sleep(0.05)
    shutil.rmtree(base, ignore_errors=True)


@dataclass
class Node:
    index: int
    name: str
    folder: Path
    amqp_port: int
    dist_port: int

    def env(self) -> dict[str, str]:
        folder = self.folder
        return os.environ | {
            "RABBITMQ_CONF_ENV_FILE": str(folder / "env"),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_CONFIG_FILE": str(folder / "rabbitmq"),
            "RABBITMQ_MNESIA_BASE": str(folder / "mnesia"),
            "RABBITMQ_LOG_BASE": str(folder / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(folder / "plugins"),
            "RABBITMQ_PID_FILE": str(folder / "pid"),
        }

    def prepare(self) -> None:
        self.folder.mkdir(parents=True)
        (self.folder / "env").write_text(ENV_FILE.format(node=self.name))
        (self.folder / "rabbitmq.conf").write_text(CONFIG.format(port=self.amqp_port))
        (self.folder / "plugins").write_text("[].\n")
        owner = pwd.getpwnam(OWNER)
        for path in [self.folder, *self.folder.iterdir()]:
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def start(self) -> None:
        """``rabbitmq-server -detached``, then wait until the node runs its applications."""
        (self.folder / "pid").unlink(missing_ok=True)
        subprocess.run(
            ["rabbitmq-server", "-detached"],
            env=self.env(),
            check=True,
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        self.wait_running()

    def wait_running(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                ctl(self.name, "await_startup", "--timeout", "10", timeout=20)
                return
            except ClusterError as exc:
                if time.monotonic() > deadline:
                    raise ClusterError(f"{self.name} did not start: {exc}\n{self.log()}") from None
                time.sleep(0.5)

    def pid(self) -> int | None:
        return beam_pid(self.folder)

    def kill(self) -> None:
        """SIGKILL to the node's beam process: no goodbye to its peers or clients."""
        pid = self.pid()
        if pid is None:
            raise ClusterError(f"{self.name} is not running")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def url(self, vhost: str, user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.amqp_port}/{quote(vhost, safe='')}"

    def log(self, lines: int = 30) -> str:
        path = self.folder / "log" / f"{self.name}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class Cluster:
    size: int = 3
    keep_logs: bool = False
    """Copy the nodes' logs to a folder of their own before removing the cluster (set it
    once a scenario failed, to read them after); its path is printed."""
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    base: Path = field(init=False)
    nodes: list[Node] = field(default_factory=list)
    _reaper: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix=f"subreq-cluster-{os.getpid()}-"))
        self.base.chmod(0o755)  # the rabbitmq user must reach its nodes' folders

    # --- life -------------------------------------------------------------------------

    def start(self) -> Cluster:
        """Start every node (at once), and join nodes 2..N to node 1."""
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.reaper", str(self.base)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C of the test run must not end it first
            cwd=Path(__file__).resolve().parents[2],
        )
        for index in range(1, self.size + 1):
            node = Node(
                index,
                f"rt{index}-{self.token}@localhost",
                self.base / f"rt{index}",
                free_port(),
                free_port(),
            )
            node.prepare()
            self.nodes.append(node)
        with ThreadPoolExecutor(self.size) as pool:
            list(pool.map(lambda node: node.start(), self.nodes))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            ctl(node.name, "stop_app")
            ctl(node.name, "join_cluster", first.name)
            ctl(node.name, "start_app")
        return self

    def close(self) -> None:
        """Every node killed, the folders removed, the reaper dismissed (idempotent)."""
        if self.keep_logs and self.nodes and self.base.exists():
            kept = Path(tempfile.mkdtemp(prefix="subreq-cluster-logs-"))
            for node in self.nodes:
                with contextlib.suppress(OSError):
                    shutil.copytree(node.folder / "log", kept / node.name.split("@")[0])
            print(f"logs of the private cluster's nodes kept in {kept}")
        remove(self.base)
        if self._reaper is not None:
            with contextlib.suppress(OSError):
                assert self._reaper.stdin is not None
                self._reaper.stdin.close()  # the reaper finds nothing left, and exits
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._reaper.wait(10)

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- what tests need ----------------------------------------------------------------

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def running(self) -> list[Node]:
        return [n for n in self.nodes if n.pid() is not None]

    def any_ctl(self, *args: str, tool: str = "rabbitmqctl", but: Node | None = None) -> str:
        """A CLI command on the first running node that answers (other than ``but``)."""
        problem: Exception = ClusterError("no node is running")
        for node in self.running():
            if node is but:
                continue
            try:
                return ctl(node.name, *args, tool=tool, timeout=30)
            except ClusterError as exc:
                problem = exc
        raise problem

    def add_vhost(self, vhost: str, user: str = "guest") -> None:
        self.any_ctl("add_vhost", vhost)
        self.any_ctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")

    def delete_vhost(self, vhost: str) -> None:
        self.any_ctl("delete_vhost", vhost)

    def url(self, vhost: str) -> str:
        """``SUBREQ_AMQP_URL`` for every node, node 1 first."""
        return ",".join(node.url(vhost) for node in self.nodes)

    def queue(self, vhost: str, queue: str, *, but: Node | None = None) -> dict[str, object]:
        """``type``, ``members`` and ``leader`` of ``queue`` as ``rabbitmqctl`` lists them."""
        listed = self.any_ctl(
            "list_queues", "-p", vhost, "name", "type", "members", "leader",
            "--formatter", "json", but=but,
        )  # fmt: skip
        for row in json.loads(listed):
            if row["name"] == queue:
                return dict(row)
        raise ClusterError(f"{queue} is not declared in {vhost}")

    def leader(self, vhost: str, queue: str, *, but: Node | None = None) -> Node:
        return self.node(str(self.queue(vhost, queue, but=but)["leader"]))

    def running_nodes(self, node: Node) -> set[str]:
        """The cluster's running nodes as ``node`` sees them."""
        status = json.loads(ctl(node.name, "cluster_status", "--formatter", "json", timeout=30))
        return set(status["running_nodes"])

    def wait_whole(self, timeout: float = START_TIMEOUT) -> None:
        """Until every node runs and sees all the others."""
        want = {n.name for n in self.nodes}
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(self.running_nodes(n) == want for n in self.nodes):
                    return
            except ClusterError:
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"the cluster did not come back whole in {timeout} s")
            time.sleep(0.5)

    def partition(self, node: Node) -> None:
        """Cut ``node`` off from its peers: they and it hold different cookies for each
        other, so the distribution connections, once closed, cannot be made again."""
        peers = "[" + ", ".join(f"'{n.name}'" for n in self.nodes if n is not node) + "]"
        ctl(
            node.name,
            "eval",
            f"[begin erlang:set_cookie(N, '{PARTITION_COOKIE}'), erlang:disconnect_node(N) end"
            f" || N <- {peers}], ok.",
        )

    def heal(self, node: Node) -> None:
        """The cookies made whole again and the peers pinged: the partition ends."""
        peers = "[" + ", ".join(f"'{n.name}'" for n in self.nodes if n is not node) + "]"
        ctl(
            node.name,
            "eval",
            f"C = erlang:get_cookie(), [begin erlang:set_cookie(N, C), net_adm:ping(N) end"
            f" || N <- {peers}], ok.",
        )

    def alarm(self, node: Node, on: bool) -> None:
        """The memory alarm of ``node`` raised (blocks publishing on every node) or cleared."""
        ctl(node.name, "set_vm_memory_high_watermark", ALARM_WATERMARK if on else DEFAULT_WATERMARK)
