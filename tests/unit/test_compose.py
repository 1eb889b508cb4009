"""docker-compose.yml, the Dockerfile and requirements.lock agree with the code.

No Docker engine is needed: the files are parsed and compared with the settings model,
pyproject.toml and the packages' imports, so a renamed variable, a forgotten dependency
or a file left out of the package fails here rather than in a container.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import tomllib
from fnmatch import fnmatch
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from consumers import tracing
from workflow.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("policies", "workflow", "consumers")
SERVICES = ("rabbitmq", "postgres", "mailpit", "jaeger", "migrate", "worker", "web")
PREFIX = "SUBREQ_"
CONTRACT_VARIABLES = (
    "SUBREQ_AMQP_URL",
    "SUBREQ_DATABASE_URL",
    "SUBREQ_SMTP_URL",
    "SUBREQ_REQUEST_TTL",
    "SUBREQ_REMINDER_AFTER",
    "SUBREQ_NOTIFY_BILLING_ADMINS",
)
"""What the contract's "Running it" section configures (SUBREQ_CATALOG is optional)."""
TIMER_VARIABLES = (
    "SUBREQ_REMINDER_EVERY",
    "SUBREQ_REMINDERS_MAX",
    "SUBREQ_EXPIRY_WARNING",
    "SUBREQ_ESCALATE_AFTER",
)
"""The approval policy's timers (R20-R22), which the worker's sweeper reads."""


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whether written as a mapping or as KEY=VALUE items."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = (line.strip() for line in text.splitlines())
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for line in lines
        if line and not line.startswith("#")
        for parts in [line.split(None, 1)]
    ]


def lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, pinned = line.partition("==")
            assert sep, f"requirements.lock: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = pinned
    return pins


# --- docker-compose.yml ---------------------------------------------------------------


def test_the_services_exist_with_their_images(services: dict[str, dict[str, Any]]) -> None:
    assert set(SERVICES) <= set(services)
    assert re.fullmatch(r"rabbitmq:[\d.]+-management", services["rabbitmq"]["image"])
    assert re.fullmatch(r"postgres:\d+", services["postgres"]["image"])
    assert re.fullmatch(r"axllent/mailpit:v[\d.]+", services["mailpit"]["image"])
    for name in ("migrate", "worker"):
        assert services[name]["build"] == ".", f"{name} is built from the Dockerfile"
    assert services["migrate"]["image"] == services["worker"]["image"]


def test_the_worker_runs_two_replicas_checked_by_subreq_health(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["worker"]
    assert worker["deploy"]["replicas"] == 2
    assert worker.get("command", ["worker"]) == ["worker"]
    assert worker["healthcheck"]["test"] == ["CMD", "subreq", "health"]
    assert "ports" not in worker, "two replicas cannot publish the same host port"
    assert "container_name" not in worker, "two replicas cannot share a container name"


def test_the_console_serves_subreq_web_after_the_migration(
    services: dict[str, dict[str, Any]],
) -> None:
    web = services["web"]
    assert web["command"] == ["web"]
    assert web["image"] == services["worker"]["image"]
    env = environment(web)
    port = env["SUBREQ_WEB_PORT"]
    assert f"{port}:{port}" in web["ports"]
    assert f"127.0.0.1:{port}/signin" in " ".join(web["healthcheck"]["test"])
    secret = env["SUBREQ_WEB_SECRET"].removeprefix("${SUBREQ_WEB_SECRET:-").removesuffix("}")
    settings = Settings(web_secret=secret, public_url=env["SUBREQ_PUBLIC_URL"])  # type: ignore[arg-type]
    assert settings.public_url == f"http://localhost:{port}"
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_migrate_runs_db_upgrade_once(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate.get("restart", "no") == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_worker_starts_after_the_migration_and_healthy_services(
    services: dict[str, dict[str, Any]],
) -> None:
    conditions = {k: v["condition"] for k, v in services["worker"]["depends_on"].items()}
    assert conditions["migrate"] == "service_completed_successfully"
    assert conditions["rabbitmq"] == "service_healthy"
    assert conditions["postgres"] == "service_healthy"
    for name, condition in conditions.items():
        if condition == "service_healthy":
            assert services[name].get("healthcheck", {}).get("test"), f"{name}: no healthcheck"


def test_every_subreq_variable_in_compose_is_a_setting(compose: dict[str, Any]) -> None:
    assert Settings.model_config.get("env_prefix") == PREFIX
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\b(SUBREQ_[A-Z0-9_]+)", text))
    for service in compose["services"].values():
        used |= {name for name in environment(service) if name.startswith(PREFIX)}
    unknown = {
        name for name in used if name.removeprefix(PREFIX).lower() not in Settings.model_fields
    }
    assert "SUBREQ_AMQP_URL" in used
    assert not unknown, f"not fields of workflow.settings.Settings: {sorted(unknown)}"


def test_the_worker_sets_every_contract_variable_to_a_valid_value(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = environment(services["worker"])
    assert set(CONTRACT_VARIABLES) <= set(env)
    assert env["SUBREQ_METRICS_PORT"] == "9100"
    assert env["SUBREQ_LOG_FORMAT"] == "json"
    assert environment(services["migrate"])["SUBREQ_DATABASE_URL"] == env["SUBREQ_DATABASE_URL"]
    for name in [n for n in os.environ if n.startswith(PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()  # every value parses, as the worker will parse it
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.smtp_url == "smtp://mailpit:1025"


def test_the_worker_sets_the_policy_timers_to_their_defaults(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written out so that operators see the knobs; the values are the domain's defaults."""
    env = environment(services["worker"])
    assert set(TIMER_VARIABLES) <= set(env)
    for name in [n for n in os.environ if n.startswith(PREFIX)]:
        monkeypatch.delenv(name)
    defaults = load_settings().timers()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings().timers() == defaults


def test_the_worker_exports_its_traces_to_the_jaeger_service(
    services: dict[str, dict[str, Any]],
) -> None:
    """The OTLP/HTTP endpoint the worker's OTEL_* variables name is the port Jaeger serves
    OTLP on, which consumers.tracing turns into an exporting tracer provider."""
    env = environment(services["worker"])
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (endpoint.scheme, endpoint.hostname, endpoint.port) == ("http", "jaeger", 4318)
    jaeger = services["jaeger"]
    assert environment(jaeger)["COLLECTOR_OTLP_ENABLED"] == "true"
    assert any(str(p).startswith("4318:") for p in jaeger["ports"])
    assert "jaeger" in services["worker"]["depends_on"]
    assert tracing.wanted(env)
    assert env["OTEL_SERVICE_NAME"] == "subreq-worker"


def test_the_urls_name_the_compose_services_and_their_credentials(
    services: dict[str, dict[str, Any]],
) -> None:
    env = environment(services["worker"])
    amqp = urlsplit(env["SUBREQ_AMQP_URL"])
    database = urlsplit(env["SUBREQ_DATABASE_URL"])
    smtp = urlsplit(env["SUBREQ_SMTP_URL"])
    assert (amqp.hostname, amqp.port) == ("rabbitmq", 5672)
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert (smtp.hostname, smtp.port) == ("mailpit", 1025)
    rabbit = environment(services["rabbitmq"])
    assert amqp.username == rabbit.get("RABBITMQ_DEFAULT_USER", "guest")
    assert amqp.password == rabbit.get("RABBITMQ_DEFAULT_PASS", "guest")
    postgres = environment(services["postgres"])
    assert database.username == postgres["POSTGRES_USER"]
    assert database.password == postgres["POSTGRES_PASSWORD"]
    assert database.path.lstrip("/") == postgres["POSTGRES_DB"]


# --- Dockerfile and requirements.lock ---------------------------------------------------


def test_the_image_runs_the_console_script_as_a_non_root_user(pyproject: dict[str, Any]) -> None:
    instructions = dockerfile()
    values = dict(instructions)
    assert re.fullmatch(r"python:3\.11[.\d]*-slim\S*", values["FROM"])
    entrypoint = json.loads(values["ENTRYPOINT"])
    assert entrypoint == ["subreq"]
    assert entrypoint[0] in pyproject["project"]["scripts"]
    assert json.loads(values["CMD"]) == ["worker"]
    assert values["USER"] not in ("root", "0")
    runs = " ".join(args for name, args in instructions if name == "RUN")
    assert "requirements.lock" in runs
    assert "pip check" in runs


def test_the_lock_pins_every_runtime_requirement_within_its_range(
    pyproject: dict[str, Any],
) -> None:
    pins = lock()
    for line in pyproject["project"]["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(Version(pins[name])), (
            f"requirements.lock pins {name}=={pins[name]}, outside {requirement.specifier}: "
            "run `make lock`"
        )


def _third_party_imports() -> dict[str, Path]:
    """Top-level modules imported by the packages that are neither ours nor stdlib."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in PACKAGES:
                        found.setdefault(top, path.relative_to(ROOT))
    return found


def test_the_lock_covers_everything_the_code_imports() -> None:
    pins = lock()
    providers = packages_distributions()
    missing = {
        f"{module} (imported by {where})": providers.get(module, ["?"])
        for module, where in _third_party_imports().items()
        if not any(canonicalize_name(dist) in pins for dist in providers.get(module, []))
    }
    assert not missing, (
        f"imported but not installed in the image: {missing}; add the distribution to "
        "[project].dependencies in pyproject.toml, then run `make lock`"
    )


def _owning_package(path: Path) -> str:
    """The dotted name of the innermost package (folder with ``__init__.py``) above ``path``."""
    folder = path.parent
    while not (folder / "__init__.py").is_file():
        folder = folder.parent
    return ".".join(folder.relative_to(ROOT).parts)


def test_the_package_ships_every_data_file(pyproject: dict[str, Any]) -> None:
    """A non-editable install (the image's) holds only .py files and package-data."""
    package_data: dict[str, list[str]] = pyproject["tool"]["setuptools"]["package-data"]
    left_out = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*"):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            owner = _owning_package(path)
            relative = path.relative_to(ROOT.joinpath(*owner.split("."))).as_posix()
            if not any(fnmatch(relative, glob) for glob in package_data.get(owner, [])):
                left_out.append(path.relative_to(ROOT).as_posix())
    folders = sorted({path.rsplit("/", 1)[0] + "/" for path in left_out})
    assert not left_out, f"{len(left_out)} files in {folders} not in [tool.setuptools.package-data]"


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    copied = [args.split()[0] for name, args in dockerfile() if name == "COPY"]
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert f"!{source.rstrip('/')}" in {line.rstrip("/") for line in ignored}


# --- README ------------------------------------------------------------------------------


def test_readme_presents_compose_as_the_production_like_path() -> None:
    readme = (ROOT / "README.md").read_text()
    pattern = r"production-like[^\n]*docker compose|docker compose[^\n]*production-like"
    assert re.search(pattern, readme, re.IGNORECASE)


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = [
        f"{PREFIX}{name.upper()}"
        for name in Settings.model_fields
        if f"`{PREFIX}{name.upper()}`" not in readme
    ]
    assert not missing, f"README's configuration table lacks {missing}"
