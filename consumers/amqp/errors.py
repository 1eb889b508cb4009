"""Errors of the broker edge: subreq's own, rooted in ``SubreqError``, and pika's
``AMQPError`` for the modules of ``consumers`` that catch it without importing pika."""

from __future__ import annotations

from pika.exceptions import AMQPChannelError, AMQPError

from workflow.errors import SubreqError

__all__ = [
    "AMQPError",
    "DeadLetterError",
    "NoWorker",
    "NotConfirmed",
    "ReplyTimeout",
    "UnsupportedPika",
]


class ReplyTimeout(SubreqError, TimeoutError):
    """Raised when no reply arrived in time; the command may still be processed later, so
    a retry must reuse its ``message_id`` (when known, it is this error's)."""

    def __init__(self, message: str, *, message_id: str | None = None) -> None:
        super().__init__(message)
        self.message_id = message_id


class NoWorker(SubreqError, RuntimeError):
    """Raised when the command could not be routed: no worker has declared the queue yet."""


class DeadLetterError(SubreqError):
    """Raised when the broker cannot be reached or refuses a republished dead letter."""


class UnsupportedPika(SubreqError, RuntimeError):
    """Raised when the installed pika is not a version the workarounds were written for."""


class NotConfirmed(SubreqError, AMQPChannelError):  # type: ignore[misc]  # pika's are untyped
    """Raised when the broker refused (nacked) a batch of replies or events, or did not
    confirm it in time: an AMQPError too, so the loop's session starts over on a new
    connection; the commands are delivered again and answered from their idempotency
    records, the events published again."""
