"""The threaded consumer loop shared by the command consumer and the email notifier.

``BlockingConnection`` runs heartbeats only while it does I/O, so the slow work (a
database transaction, an SMTP session) runs on one work thread while the connection's
thread keeps the socket serviced; the result comes back through
``add_callback_threadsafe``, so only the connection's thread touches a channel. The
loop holds what was delivered and not yet settled; a ``Hand`` says what to take next,
does the work, and decides how to settle it. Replies go out on the consuming channel in
confirm mode (``Confirmed``): an ack waits until the replies before it are confirmed.

A lost connection drops what is in hand (acks for the dead channel would close the new
one with 406); the broker redelivers it. ``stop`` cancels the consumer, lets the work
in hand finish and settle, and closes the connection, which requeues what is left.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Generic, Protocol, TypeVar

from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.exceptions import AMQPError
from pika.spec import Basic, BasicProperties

from consumers.amqp import alarms
from consumers.amqp.connection import run_connected
from consumers.amqp.deliveries import Action, Delivery, apply
from consumers.amqp.publishing import Confirmed
from consumers.amqp.topology import declare_topology

log = logging.getLogger(__name__)

Held = TypeVar("Held")
"""What the hand keeps per delivery until it is settled."""
Unit = TypeVar("Unit")
"""What one run of the work takes: a batch, or one delivery."""
Result = TypeVar("Result")
"""What the work returns to the settle step."""

Apply = Callable[[Sequence[Action]], None]
"""Applies actions, in order, to the channels of the connection the unit came from."""


class Hand(Protocol[Held, Unit, Result]):
    """What a consumer decides; everything else is the loop's."""

    def hold(self, delivery: Delivery) -> Held:
        """What to keep of a new delivery."""

    def take(self, held: list[Held], read: Callable[[], None]) -> Unit | None:
        """The next unit of work, removed from ``held`` (never empty here), or ``None`` when
        none may start yet. ``read`` hands over what the socket holds now, into ``held``."""

    def due_in(self, held: list[Held]) -> float:
        """Seconds until something in ``held`` (never empty here) may start."""

    def work(self, unit: Unit) -> Result:
        """On the work thread: the slow part, one unit at a time."""

    def settle(self, unit: Unit, result: Future[Result], held: list[Held], apply: Apply) -> None:
        """On the connection's thread: decide, and ``apply`` the actions; a unit kept for
        later goes back into ``held``."""


class DeliveryLoop(Generic[Held, Unit, Result]):
    """Consumes ``queue`` until ``stop`` is set, reconnecting with backoff."""

    def __init__(
        self,
        url: str,
        hand: Hand[Held, Unit, Result],
        *,
        name: str,
        queue: str,
        prefetch: int,
        stop: threading.Event,
        work_thread: str,
        poll: float,
        finish_held: bool,
        announce: str,
    ) -> None:
        """``poll``: seconds broker I/O may block while nothing can start. ``finish_held``:
        whether a stop still starts work for what is held (a batch in hand), or leaves it
        to the broker (a retry that is not due). ``announce``: logged once consuming."""
        self.url = url
        self.hand = hand
        self.name = name
        self.queue = queue
        self.prefetch = prefetch
        self.stop = stop
        self.poll = poll
        self.finish_held = finish_held
        self.announce = announce
        self.ready = threading.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=work_thread)
        self._held: list[Held] = []
        self._in_flight: Future[Result] | None = None

    def run(self) -> None:
        try:
            run_connected(
                self.url,
                name=self.name,
                stop=self.stop,
                session=self._session,
                after=self._drop_in_hand,
            )
        finally:
            self._executor.shutdown(wait=True)

    def _drop_in_hand(self) -> None:
        """Acks for a dead channel would close the new one (406): forget them. The broker
        redelivers those messages, and idempotency makes that harmless."""
        if self._in_flight is not None:
            # The work itself finishes either way; a failure of it was the settle step's
            # to report, and must not end the reconnect loop.
            wait([self._in_flight])
        self._in_flight = None
        self._held.clear()
        self.ready.clear()

    def _session(self, connection: BlockingConnection) -> None:
        channel = connection.channel()
        declare_topology(channel)
        channel.basic_qos(prefetch_count=self.prefetch)
        replies = Confirmed(channel, blocked=lambda: alarms.is_blocked(self.name))
        dead = connection.channel()
        dead.confirm_delivery()
        tag = channel.basic_consume(self.queue, self._on_message)
        self.ready.set()
        log.info("%s", self.announce)
        while not self.stop.is_set():
            self._dispatch(connection, replies, dead)
            # Returns as soon as a delivery or the work's result arrives; a zero limit
            # only when something can start now, so this thread never spins.
            connection.process_data_events(time_limit=self._wait())
        channel.basic_cancel(tag)  # deliveries not yet handed to us go back to the queue
        while self._in_flight is not None or (self.finish_held and self._held):
            connection.process_data_events(time_limit=0.01)
            if self.finish_held:
                self._dispatch(connection, replies, dead)
        connection.close()  # what is still held goes back to the queue

    def _wait(self) -> float:
        if self._in_flight is not None or not self._held:
            return self.poll
        return max(0.0, min(self.poll, self.hand.due_in(self._held)))

    def _on_message(
        self,
        _channel: BlockingChannel,
        method: Basic.Deliver,
        properties: BasicProperties,
        body: bytes,
    ) -> None:
        delivery = Delivery(method.delivery_tag, method.routing_key, properties, body)
        self._held.append(self.hand.hold(delivery))

    def _dispatch(
        self, connection: BlockingConnection, replies: Confirmed, dead: BlockingChannel
    ) -> None:
        if self._in_flight is not None or not self._held:
            return
        unit = self.hand.take(self._held, lambda: connection.process_data_events(time_limit=0))
        if unit is None:
            return
        future = self._executor.submit(self.hand.work, unit)
        self._in_flight = future

        def finished(_: Future[Result]) -> None:
            # A connection that died meanwhile refuses the callback: the broker
            # redelivers what the unit held.
            with contextlib.suppress(AMQPError):
                connection.add_callback_threadsafe(
                    lambda: self._finish(replies, dead, unit, future)
                )

        future.add_done_callback(finished)

    def _finish(
        self,
        replies: Confirmed,
        dead: BlockingChannel,
        unit: Unit,
        future: Future[Result],
    ) -> None:
        self._in_flight = None
        if not replies.channel.is_open:
            return
        self.hand.settle(unit, future, self._held, lambda actions: apply(actions, replies, dead))
