"""``SUBREQ_AMQP_URL`` with the nodes of a cluster: comma-separated URLs, each checked, tried
in the order given; a bad one is one line naming the variable and the address, exit 2."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from consumers.amqp.connection import parameters
from consumers.amqp.probe import broker_where
from consumers.cli import app
from workflow.errors import ConfigurationError
from workflow.settings import amqp_addresses, load_settings

TWO = "amqp://u:p@h1:5672/vh,amqp://u:p@h2:5673/vh"


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SUBREQ_") and not name.startswith("SUBREQ_TEST_"):
            monkeypatch.delenv(name)


def test_several_addresses_are_kept_in_their_order() -> None:
    assert amqp_addresses(TWO + ", amqps://h3/vh") == [
        "amqp://u:p@h1:5672/vh",
        "amqp://u:p@h2:5673/vh",
        "amqps://h3/vh",
    ]
    found = parameters(TWO)
    assert [(p.host, p.port, p.virtual_host) for p in found] == [
        ("h1", 5672, "vh"),
        ("h2", 5673, "vh"),
    ]
    assert all(p.heartbeat == 30 and p.connection_attempts == 1 for p in found)
    assert broker_where(TWO) == "h1:5672 vhost vh, h2:5673 vhost vh"


def test_one_address_is_still_one() -> None:
    assert amqp_addresses("amqp://guest:guest@localhost:5672/%2F") == [
        "amqp://guest:guest@localhost:5672/%2F"
    ]
    assert [p.virtual_host for p in parameters("amqp://guest:guest@localhost:5672/%2F")] == ["/"]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("amqp://h1/vh,,amqp://h2/vh", "address 2 of 3 is empty"),
        ("amqp://h1/vh,", "address 2 of 2 is empty"),
        ("amqp://h1/vh,http://h2/vh", "address 2 of 2 must start with amqp:// or amqps://"),
        ("amqp://h1:port/vh,amqp://h2/vh", "address 1 of 2 is not a usable AMQP URL"),
        ("amqp:///vh,amqp://h2/vh", "address 1 of 2 names no host"),
        ("localhost", "the URL must start with amqp:// or amqps://"),
    ],
)
def test_a_bad_address_names_the_variable_and_which_one(
    value: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUBREQ_AMQP_URL", value)
    with pytest.raises(ConfigurationError, match=f"^SUBREQ_AMQP_URL: {says}"):
        load_settings()
    with pytest.raises(ConfigurationError, match=f"^SUBREQ_AMQP_URL: {says}"):
        parameters(value)
    result = CliRunner().invoke(app, ["send", "catalog.get", "--json", "{}"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"subreq: SUBREQ_AMQP_URL: {says}")
    assert result.stderr.count("\n") == 1
