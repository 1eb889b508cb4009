"""The delivery loop's own bookkeeping, without a broker."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from consumers.amqp.deliveries import Delivery
from consumers.amqp.loop import Apply, DeliveryLoop


class FailingHand:
    def hold(self, delivery: Delivery) -> Delivery:
        return delivery

    def take(self, held: list[Delivery], read: Callable[[], None]) -> Delivery | None:
        return held.pop(0)

    def due_in(self, held: list[Delivery]) -> float:
        return 0.0

    def work(self, unit: Delivery) -> None:
        raise RuntimeError("a bug in the work")

    def settle(
        self, unit: Delivery, result: Future[None], held: list[Delivery], apply: Apply
    ) -> None:
        raise AssertionError("not reached")


def test_a_lost_connection_with_failed_work_in_hand_does_not_end_the_loop() -> None:
    """The reconnect loop forgets what was in hand; work that raised must not escape from
    there, or the consumer's thread would die instead of reconnecting."""
    loop: DeliveryLoop[Any, Any, Any] = DeliveryLoop(
        "amqp://guest:guest@127.0.0.1:1/%2F",
        FailingHand(),
        name="test",
        queue="q",
        prefetch=1,
        stop=threading.Event(),
        work_thread="test-work",
        poll=0.01,
        finish_held=False,
        announce="",
    )
    failed: Future[None] = Future()
    failed.set_exception(RuntimeError("a bug in the work"))
    loop._in_flight = failed
    loop._held.append(object())
    loop.ready.set()
    loop._drop_in_hand()
    assert loop._in_flight is None
    assert loop._held == []
    assert not loop.ready.is_set()
