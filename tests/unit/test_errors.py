"""Every error consumers raises on purpose is a SubreqError that says when it is raised."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import consumers
from consumers.amqp.errors import NoWorker, ReplyTimeout
from consumers.demo import BrokerUnreachable
from workflow.errors import SubreqError


def _error_classes() -> list[type[BaseException]]:
    found = []
    for info in pkgutil.walk_packages(consumers.__path__, "consumers."):
        module = importlib.import_module(info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == info.name:
                found.append(value)
    return found


def test_every_error_of_consumers_is_rooted_in_subreq_error() -> None:
    errors = _error_classes()
    assert len(errors) >= 8, errors
    for error in errors:
        assert issubclass(error, SubreqError), error
        assert (error.__doc__ or "").startswith("Raised when"), error


def test_the_old_bases_still_catch_them() -> None:
    assert issubclass(ReplyTimeout, TimeoutError)
    assert issubclass(NoWorker, RuntimeError)
    assert issubclass(BrokerUnreachable, RuntimeError)
