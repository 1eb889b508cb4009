"""The worker's process settles the cyclic collector once its loops have started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from consumers.worker import COLLECTOR_THRESHOLDS, settle_collector


@pytest.fixture
def collector() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_start_up_objects_are_frozen_and_the_young_generations_collected_less_often(
    collector: None,
) -> None:
    gc.unfreeze()
    settle_collector()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == COLLECTOR_THRESHOLDS
    assert COLLECTOR_THRESHOLDS[0] > 700  # fewer young collections than Python's default
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1  # what dies after start-up is still collected
