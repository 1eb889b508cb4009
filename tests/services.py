"""Throw-away PostgreSQL databases and RabbitMQ vhosts for the test suite.

Every test session gets its own database and vhost, named ``subreq_test_<pid>_<hex>``,
on the servers named by ``SUBREQ_TEST_DATABASE_URL`` and ``SUBREQ_TEST_AMQP_URL``.
When a server is unreachable, :func:`service_unavailable` decides what happens:
fail under CI, fall back to a Docker container if an engine answers, skip otherwise.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import os
import secrets
import subprocess
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
NAME_PREFIX = "subreq_test_"
CONNECT_TIMEOUT = 3  # seconds
POSTGRES_IMAGE = "postgres:15"
RABBITMQ_IMAGE = "rabbitmq:3.10"
MANAGEMENT_PORT = 15672


def fresh_name() -> str:
    return f"{NAME_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"


def _check_test_name(name: str) -> None:
    if not name.startswith(NAME_PREFIX):
        raise ValueError(f"refusing to drop {name!r}: not created by the test suite")


# --- policy -----------------------------------------------------------------------------


def docker_available() -> bool:
    """True if a Docker engine answers (not just the client being installed)."""
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock"):
        return False
    with warnings.catch_warnings():
        # docker-py leaves its socket open when the engine does not answer.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            import docker  # lazy: only needed for the fallback

            client = docker.from_env(timeout=CONNECT_TIMEOUT)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False
        finally:
            gc.collect()


def service_unavailable(name: str, reason: str) -> None:
    """Handle an unreachable service.

    Under CI (``CI=true``) the session fails: CI must never silently skip. Otherwise, if a
    Docker engine answers, this returns and the caller starts a container instead. If not,
    the tests that need the service are skipped.
    """
    message = f"{name} is not reachable: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: services must be running)", pytrace=False)
    if not docker_available():
        pytest.skip(f"{message}; no Docker engine to fall back to")


# --- PostgreSQL -------------------------------------------------------------------------


def _libpq_conninfo(url: str, database: str | None = None) -> str:
    """SQLAlchemy URL (``postgresql+psycopg://...``) -> libpq URI for psycopg."""
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def _pg_connect(url: str, database: str | None = None) -> psycopg.Connection[Any]:
    return psycopg.connect(
        _libpq_conninfo(url, database), autocommit=True, connect_timeout=CONNECT_TIMEOUT
    )


def check_postgres(url: str) -> str | None:
    """Why the server of ``url`` cannot be connected to, or None if it can."""
    try:
        _pg_connect(url).close()
    except psycopg.OperationalError as exc:
        return str(exc).strip()
    return None


def create_database(base_url: str) -> str:
    """Create a fresh database on the server of ``base_url``; return its SQLAlchemy URL."""
    name = fresh_name()
    with _pg_connect(base_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(base_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str, *, maintenance_url: str | None = None) -> None:
    """Drop the database of ``url``, connecting to ``maintenance_url`` (default: its
    server's ``postgres`` database) and terminating any connections still open."""
    name = make_url(url).database or ""
    _check_test_name(name)
    conn = _pg_connect(maintenance_url) if maintenance_url else _pg_connect(url, "postgres")
    with conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def _postgres_container() -> Iterator[str]:
    try:
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:  # testcontainers < 4.13
        from testcontainers.postgres import PostgresContainer

    with PostgresContainer(POSTGRES_IMAGE, driver="psycopg") as container:
        yield container.get_connection_url()


@contextmanager
def postgres_database(base_url: str) -> Iterator[str]:
    """A fresh database for the duration of the block (server, else Docker, else skip)."""
    with ExitStack() as stack:
        problem = check_postgres(base_url)
        if problem:
            service_unavailable("PostgreSQL", f"{_redact(base_url)}: {problem}")
            base_url = stack.enter_context(_postgres_container())
        url = create_database(base_url)
        stack.callback(drop_database, url, maintenance_url=base_url)
        yield url


# --- RabbitMQ ---------------------------------------------------------------------------


def _vhost_of(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def _with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def check_amqp(url: str) -> str | None:
    """Why no AMQP connection to ``url`` can be opened, or None if one can."""
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    params.retry_delay = 0
    params.socket_timeout = CONNECT_TIMEOUT
    params.stack_timeout = CONNECT_TIMEOUT * 2
    pika_logger = logging.getLogger("pika")
    level = pika_logger.level
    pika_logger.setLevel(logging.CRITICAL)  # the error below says it all; no log traceback
    try:
        pika.BlockingConnection(params).close()
    except (pika.exceptions.AMQPError, OSError) as exc:
        return repr(exc)
    finally:
        pika_logger.setLevel(level)
    return None


def _management(url: str, method: str, path: str, body: object = None) -> None:
    """Call the RabbitMQ management HTTP API on the AMQP host, port 15672."""
    parts = urlsplit(url)
    user, password = unquote(parts.username or "guest"), unquote(parts.password or "guest")
    request = urllib.request.Request(
        f"http://{parts.hostname}:{MANAGEMENT_PORT}/api/{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode(),
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=CONNECT_TIMEOUT) as response:
        response.read()


def _management_available(url: str) -> bool:
    try:
        _management(url, "GET", "overview")
    except (urllib.error.URLError, OSError):
        return False
    return True


def _rabbitmqctl(*args: str) -> None:
    try:
        subprocess.run(
            ["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError as exc:
        raise RuntimeError(
            "neither the management API (port 15672) nor rabbitmqctl is available"
        ) from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {exc.stderr.strip()}") from exc


def create_vhost(base_url: str) -> str:
    """Create a fresh vhost on the broker of ``base_url``, give the URL's user full rights
    on it, and return the AMQP URL for that vhost."""
    vhost = fresh_name()
    user = unquote(urlsplit(base_url).username or "guest")
    if _management_available(base_url):
        v, u = quote(vhost, safe=""), quote(user, safe="")
        _management(base_url, "PUT", f"vhosts/{v}")
        perms = {"configure": ".*", "write": ".*", "read": ".*"}
        _management(base_url, "PUT", f"permissions/{v}/{u}", perms)
    else:
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    return _with_vhost(base_url, vhost)


def delete_vhost(url: str) -> None:
    """Delete the vhost of ``url`` (and everything in it)."""
    vhost = _vhost_of(url)
    _check_test_name(vhost)
    if _management_available(url):
        _management(url, "DELETE", f"vhosts/{quote(vhost, safe='')}")
    else:
        _rabbitmqctl("delete_vhost", vhost)


@contextmanager
def _rabbitmq_container() -> Iterator[str]:
    try:
        from testcontainers.community.rabbitmq import RabbitMqContainer
    except ImportError:  # testcontainers < 4.13
        from testcontainers.rabbitmq import RabbitMqContainer

    # The container is thrown away afterwards, so its own vhost is as fresh as ours.
    vhost = fresh_name()
    with RabbitMqContainer(RABBITMQ_IMAGE, vhost=vhost) as container:
        p = container.get_connection_params()
        user, password = quote(container.username, safe=""), quote(container.password, safe="")
        yield f"amqp://{user}:{password}@{p.host}:{p.port}/{quote(vhost, safe='')}"


@contextmanager
def rabbitmq_vhost(base_url: str) -> Iterator[str]:
    """A fresh vhost for the duration of the block (broker, else Docker, else skip)."""
    problem = check_amqp(base_url)
    if problem:
        service_unavailable("RabbitMQ", f"{_redact(base_url)}: {problem}")
        with _rabbitmq_container() as url:
            yield url
        return
    url = create_vhost(base_url)
    try:
        yield url
    finally:
        delete_vhost(url)


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
