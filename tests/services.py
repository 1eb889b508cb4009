"""Throw-away PostgreSQL databases and RabbitMQ vhosts for the test suite.

Every test session gets its own database and vhost, named ``subreq_test_<pid>_<hex>``,
on the servers named by ``SUBREQ_TEST_DATABASE_URL`` and ``SUBREQ_TEST_AMQP_URL``.
When a server is unreachable, :func:`service_unavailable` decides what happens:
fail under CI, fall back to a Docker container if an engine answers, skip otherwise.
"""

from __future__ import annotations

import gc
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import quote

import pika
import psycopg
import pytest

from benchmarks import services as provision  # the same vhosts and databases, our prefix

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
NAME_PREFIX = "subreq_test_"
CONNECT_TIMEOUT = 3  # seconds
POSTGRES_IMAGE = "postgres:15"
RABBITMQ_IMAGE = "rabbitmq:3.10"


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


def check_postgres(url: str) -> str | None:
    """Why the server of ``url`` cannot be connected to, or None if it can."""
    try:
        provision.pg_connect(url).close()
    except psycopg.OperationalError as exc:
        return str(exc).strip()
    return None


def create_database(base_url: str) -> str:
    """A fresh database on the server of ``base_url``; returns its SQLAlchemy URL."""
    return provision.create_database(base_url, prefix=NAME_PREFIX)


def drop_database(url: str, *, maintenance_url: str | None = None) -> None:
    """Drop the database of ``url``, from ``maintenance_url`` (default: its server's
    ``postgres`` database)."""
    maintenance = maintenance_url or provision.with_database(url, "postgres")
    provision.drop_database(url, maintenance_url=maintenance, prefix=NAME_PREFIX)


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
            service_unavailable("PostgreSQL", f"{provision.redact(base_url)}: {problem}")
            base_url = stack.enter_context(_postgres_container())
        url = create_database(base_url)
        stack.callback(drop_database, url, maintenance_url=base_url)
        yield url


# --- RabbitMQ ---------------------------------------------------------------------------


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


def create_vhost(base_url: str) -> str:
    """A fresh vhost on the broker of ``base_url`` with full rights for the URL's user;
    returns the AMQP URL for it."""
    return provision.create_vhost(base_url, prefix=NAME_PREFIX)


def delete_vhost(url: str) -> None:
    """Delete the vhost of ``url`` (and everything in it)."""
    provision.delete_vhost(url, prefix=NAME_PREFIX)


@contextmanager
def _rabbitmq_container() -> Iterator[str]:
    try:
        from testcontainers.community.rabbitmq import RabbitMqContainer
    except ImportError:  # testcontainers < 4.13
        from testcontainers.rabbitmq import RabbitMqContainer

    # The container is thrown away afterwards, so its own vhost is as fresh as ours.
    vhost = provision.fresh_name(NAME_PREFIX)
    with RabbitMqContainer(RABBITMQ_IMAGE, vhost=vhost) as container:
        p = container.get_connection_params()
        user, password = quote(container.username, safe=""), quote(container.password, safe="")
        yield f"amqp://{user}:{password}@{p.host}:{p.port}/{quote(vhost, safe='')}"


@contextmanager
def rabbitmq_vhost(base_url: str) -> Iterator[str]:
    """A fresh vhost for the duration of the block (broker, else Docker, else skip)."""
    problem = check_amqp(base_url)
    if problem:
        service_unavailable("RabbitMQ", f"{provision.redact(base_url)}: {problem}")
        with _rabbitmq_container() as url:
            yield url
        return
    url = create_vhost(base_url)
    try:
        yield url
    finally:
        delete_vhost(url)
