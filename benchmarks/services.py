"""Throw-away RabbitMQ vhosts and PostgreSQL databases, one per benchmark run.

Names start with ``subreq_bench_`` (the test suite passes its own prefix) and only such
names are ever deleted. A vhost is
created through the management API when port 15672 answers, else with ``rabbitmqctl``
(which needs root or the rabbitmq user). ``reuse_vhost`` instead runs in the vhost of
the given URL and deletes the topology the run declared at its end, for brokers where
neither is available (e.g. a test container).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import pika
import psycopg
from pika.exceptions import AMQPError
from psycopg import sql

from workflow.contract.names import (
    COMMANDS_EXCHANGE,
    COMMANDS_QUEUE,
    DEAD_EXCHANGE,
    DEAD_QUEUE,
    EVENTS_EXCHANGE,
    NOTIFICATIONS_DEAD_EXCHANGE,
    NOTIFICATIONS_DEAD_QUEUE,
    RETIRED_NOTIFICATIONS_QUEUE,
)

NAME_PREFIX = "subreq_bench_"
MANAGEMENT_PORT = 15672
TIMEOUT = 5  # seconds, for every administrative call

# What a run may leave in a reused vhost: subreq's topology (declared by the worker or
# the ceiling), the notifier's among it (a notification left there would be mailed by the
# next run's notifier), and the benchmark's own events queue.
TOPOLOGY_QUEUES = (
    COMMANDS_QUEUE,
    DEAD_QUEUE,
    RETIRED_NOTIFICATIONS_QUEUE,
    NOTIFICATIONS_DEAD_QUEUE,
    "bench.events",
)
TOPOLOGY_EXCHANGES = (
    COMMANDS_EXCHANGE,
    EVENTS_EXCHANGE,
    DEAD_EXCHANGE,
    NOTIFICATIONS_DEAD_EXCHANGE,
)


class ServiceError(RuntimeError):
    """A vhost or database could not be created or removed."""


def fresh_name(prefix: str = NAME_PREFIX) -> str:
    return f"{prefix}{os.getpid()}_{secrets.token_hex(4)}"


def _check_ours(name: str, prefix: str) -> None:
    if not name.startswith(prefix):
        raise ServiceError(f"refusing to delete {name!r}: its name does not start with {prefix}")


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


# --- RabbitMQ -----------------------------------------------------------------------------


def vhost_of(url: str) -> str:
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def with_vhost(url: str, vhost: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))


def _management(url: str, method: str, path: str, body: object = None) -> None:
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
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
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
        raise ServiceError(
            "cannot create a vhost: neither the management API (port 15672) nor rabbitmqctl "
            "is available (use --reuse-vhost to run in the vhost of --amqp-url)"
        ) from exc
    except subprocess.CalledProcessError as exc:
        raise ServiceError(f"rabbitmqctl {' '.join(args)} failed: {exc.stderr.strip()}") from exc


def create_vhost(base_url: str, *, prefix: str = NAME_PREFIX) -> str:
    """A fresh vhost on the broker of ``base_url`` with full rights for its user."""
    vhost = fresh_name(prefix)
    user = unquote(urlsplit(base_url).username or "guest")
    if _management_available(base_url):
        v, u = quote(vhost, safe=""), quote(user, safe="")
        _management(base_url, "PUT", f"vhosts/{v}")
        perms = {"configure": ".*", "write": ".*", "read": ".*"}
        _management(base_url, "PUT", f"permissions/{v}/{u}", perms)
    else:
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
    return with_vhost(base_url, vhost)


def delete_vhost(url: str, *, prefix: str = NAME_PREFIX) -> None:
    vhost = vhost_of(url)
    _check_ours(vhost, prefix)
    if _management_available(url):
        _management(url, "DELETE", f"vhosts/{quote(vhost, safe='')}")
    else:
        _rabbitmqctl("delete_vhost", vhost)


def delete_topology(url: str) -> None:
    """Remove what a run declared in a reused vhost, so the next run starts empty."""
    params = pika.URLParameters(url)
    params.socket_timeout = TIMEOUT
    connection = pika.BlockingConnection(params)
    try:
        for queue in TOPOLOGY_QUEUES:
            channel = connection.channel()
            with contextlib.suppress(AMQPError):
                channel.queue_delete(queue)
            if channel.is_open:
                channel.close()
        for exchange in TOPOLOGY_EXCHANGES:
            channel = connection.channel()
            with contextlib.suppress(AMQPError):
                channel.exchange_delete(exchange)
            if channel.is_open:
                channel.close()
    finally:
        if connection.is_open:
            connection.close()


@contextmanager
def amqp_vhost(base_url: str, *, reuse: bool) -> Iterator[str]:
    """The AMQP URL of a vhost that is empty for the duration of the block."""
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    if reuse:
        delete_topology(base_url)  # a previous, interrupted run may have left some
        try:
            yield base_url
        finally:
            delete_topology(base_url)
        return
    url = create_vhost(base_url)
    try:
        yield url
    finally:
        delete_vhost(url)


# --- PostgreSQL ---------------------------------------------------------------------------


def libpq_url(url: str, database: str | None = None) -> str:
    """``postgresql+psycopg://u@h/db`` (SQLAlchemy) -> ``postgresql://u@h/db`` (libpq)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ServiceError(f"not a PostgreSQL URL: {redact(url)}")
    path = parts.path if database is None else "/" + quote(database, safe="")
    return urlunsplit(parts._replace(scheme="postgresql", path=path))


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(database, safe="")))


def pg_connect(url: str, database: str | None = None) -> psycopg.Connection[Any]:
    return psycopg.connect(libpq_url(url, database), autocommit=True, connect_timeout=TIMEOUT)


def create_database(base_url: str, *, prefix: str = NAME_PREFIX) -> str:
    """A fresh database on the server of ``base_url``; returns its SQLAlchemy URL."""
    name = fresh_name(prefix)
    with pg_connect(base_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return with_database(base_url, name)


def drop_database(url: str, *, maintenance_url: str, prefix: str = NAME_PREFIX) -> None:
    """Drop it, with any connections still open, from ``maintenance_url``'s database."""
    name = unquote(urlsplit(url).path[1:])
    _check_ours(name, prefix)
    with pg_connect(maintenance_url) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def postgres_database(base_url: str) -> Iterator[str]:
    try:
        url = create_database(base_url)
    except psycopg.Error as exc:
        raise ServiceError(f"cannot create a database on {redact(base_url)}: {exc}") from exc
    try:
        yield url
    finally:
        drop_database(url, maintenance_url=base_url)


def postgres_version(url: str) -> str:
    with pg_connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def rabbitmq_version(url: str) -> str:
    params = pika.URLParameters(url)
    params.socket_timeout = TIMEOUT
    connection = pika.BlockingConnection(params)
    try:
        version = connection._impl.server_properties.get("version", "?")
    finally:
        connection.close()
    return version.decode() if isinstance(version, bytes) else str(version)
