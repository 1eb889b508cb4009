"""A PostgreSQL server of the scenario's own, to crash and restart without touching the
shared one (other test sessions run against that).

``initdb`` into a fresh folder as the ``postgres`` user (trust authentication, its socket
in that folder, a free TCP port on 127.0.0.1), then the postmaster runs as a child of the
test process, forked by a thread that lives as long as the server and started with
``PR_SET_PDEATHSIG``, so that it dies with the test process even when that is killed.
:meth:`PrivatePostgres.restart` is a crash and a restart: ``pg_ctl stop -m immediate``
(every backend killed, no checkpoint: crash recovery at the next start), then the same
folder started again. :func:`private_postgres` always stops the
server and removes its folder, also when the scenario failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

from tests.smtpd import free_port


def _server_bin() -> Path:
    """``SUBREQ_TEST_PG_BIN``, else the newest Debian server's binaries (``/usr/lib/
    postgresql/<version>/bin``, the shared server's package)."""
    if os.environ.get("SUBREQ_TEST_PG_BIN"):
        return Path(os.environ["SUBREQ_TEST_PG_BIN"])
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else Path("/usr/lib/postgresql/15/bin")


BIN = _server_bin()
USER = "postgres"
PR_SET_PDEATHSIG = 1
SETTINGS = (
    "listen_addresses = '127.0.0.1'",
    "fsync = off",  # a crash of the server, not of the machine: the OS keeps every write
    "full_page_writes = off",
    "shared_buffers = 32MB",
    "max_connections = 60",
)


def available() -> str | None:
    """Why no private server can be started here, or None."""
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (BIN / name).exists()]
    if missing:
        return f"no {', '.join(missing)} in {BIN} (SUBREQ_TEST_PG_BIN)"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no {USER!r} user to run the server as"
    if os.geteuid() != 0:
        return "starting a server as the postgres user needs root"
    return None


def _as_postgres() -> None:  # pragma: no cover - runs in the child, after fork
    user = pwd.getpwnam(USER)
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


def _postmaster_child() -> None:  # pragma: no cover - runs in the child, after fork
    _as_postgres()
    # After the change of user, which clears it: the server dies with the test process.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.setsid()


class PrivatePostgres:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = free_port()
        self.log = folder / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._spawner = ThreadPoolExecutor(1, thread_name_prefix="private-postgres")
        self.restarts = 0

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``postgres`` database."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        done = subprocess.run(
            argv, preexec_fn=_as_postgres, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stdout}{done.stderr}")

    def create(self) -> None:
        os.chown(self.folder, pwd.getpwnam(USER).pw_uid, pwd.getpwnam(USER).pw_gid)
        self._run(
            str(BIN / "initdb"), "-D", str(self.data), "-U", USER, "-A", "trust",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n".join((*SETTINGS, f"port = {self.port}", "")))
            conf.write(f"unix_socket_directories = '{self.folder}'\n")

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            return subprocess.Popen(
                [str(BIN / "postgres"), "-D", str(self.data)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_postmaster_child,
            )

    def start(self, timeout: float = 60) -> None:
        # The death signal follows the *thread* that forked: the postmaster is always
        # forked by the spawner thread, which lives until stop(), never by a thread of a
        # fault that ends after the restart (that would kill the server with it).
        self.process = self._spawner.submit(self._spawn).result()
        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(
                    f"postgresql://{USER}@127.0.0.1:{self.port}/postgres", connect_timeout=2
                ).close()
                return
            except psycopg.OperationalError as exc:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the private server did not start: {self.tail()}") from exc
                time.sleep(0.1)

    def restart(self) -> None:
        """A crash (immediate stop: no checkpoint, every backend killed) and a start."""
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "stop", "-m", "immediate", "-w")
        if self.process is not None:
            self.process.wait(30)
        self.start()
        self.restarts += 1

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop the server (idempotent): an immediate stop, in which the postmaster ends
        and reaps every backend before it exits; SIGKILL to its session if that fails."""
        if self.process is None:
            self._spawner.shutdown()
            return
        if self.process.poll() is None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(
                    str(BIN / "pg_ctl"), "-D", str(self.data), "stop", "-m", "immediate", "-w",
                    timeout=30,
                )  # fmt: skip
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self._spawner.shutdown()

    def tail(self, limit: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-limit:] if self.log.exists() else ""


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A private server, running, for the block; stopped and its folder removed after."""
    folder = Path(tempfile.mkdtemp(prefix="subreq-pg-"))
    server = PrivatePostgres(folder)
    try:
        server.create()
        server.start()
        yield server
    finally:
        server.stop()
        _wait_backends_gone(folder)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_backends_gone(folder: Path, timeout: float = 10) -> None:
    """The backends of a postmaster that was killed exit on their own, at once; wait for
    them so that nothing of the server outlives the block."""
    deadline = time.monotonic() + timeout
    while processes_of(folder) and time.monotonic() < deadline:
        time.sleep(0.05)


def processes_of(folder: Path) -> list[int]:
    """Processes (not zombies) of the ``postgres`` user whose working folder is inside
    ``folder``: the server's."""
    found = []
    uid = pwd.getpwnam(USER).pw_uid
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid or _state(entry) == "Z":
                continue
            if Path(os.readlink(entry / "cwd")).is_relative_to(folder):
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
            continue
    return found


def _state(entry: Path) -> str:
    stat = (entry / "stat").read_text()
    return stat[stat.rindex(")") + 2]
