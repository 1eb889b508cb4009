"""What a reply means to a client: the ``result`` of an ``ok`` reply parsed into the
contract's models, or a refusal raised as the typed error of its code.

A refusal is a normal answer of the service (a rule, a lookup, an invalid message), so
each code gets its own class: callers catch the one they can act on
(``except RequestPending as e: e.request_id``) and let the rest through as ``Refusal``.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from policies.decision import ErrorCode
from workflow.contract.envelopes import REPLIES, Detail, ErrorReply
from workflow.errors import SubreqError

__all__ = [
    "REFUSALS",
    "Forbidden",
    "InvalidChange",
    "InvalidMessage",
    "InvalidState",
    "NotEligible",
    "NotFound",
    "OutOfScope",
    "Refusal",
    "RequestPending",
    "UnexpectedReply",
    "UnknownAccount",
    "UnknownMember",
    "result_of",
]

M = TypeVar("M", bound=BaseModel)


class UnexpectedReply(SubreqError, ValueError):
    """Raised when a reply does not have the contract's shape (a worker of another
    version, or something else answering on the reply queue)."""


class Refusal(SubreqError):
    """Raised when subreq refused a command (``{"ok": false, ...}``); ``code``, ``message``
    and ``details`` are the reply's, each detail with its code, reason, rule, field (a
    path into the body as sent) and request_id."""

    code: str = ""
    """The class's own code; an instance has the reply's (also one newer than this client)."""

    def __init__(self, code: str, message: str, details: list[Detail]) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details

    @property
    def fields(self) -> list[str]:
        """The paths of the fields at fault, in the order of the details."""
        return [d.field for d in self.details if d.field is not None]

    @property
    def rules(self) -> list[str]:
        """The ids of the rules that refused, in the order of the details."""
        return [d.rule for d in self.details if d.rule is not None]


class InvalidMessage(Refusal):
    """Raised when the command itself is unusable: not JSON, an unknown routing key, a
    schema violation (a ``reject`` without comment, R19); ``fields`` say where."""

    code = ErrorCode.INVALID_MESSAGE


class UnknownAccount(Refusal):
    """Raised when the command names an account the directory does not know."""

    code = ErrorCode.UNKNOWN_ACCOUNT


class UnknownMember(Refusal):
    """Raised when the actor or user is not a member of the account."""

    code = ErrorCode.UNKNOWN_MEMBER


class NotFound(Refusal):
    """Raised when the request does not exist, or the actor may not see it (R3)."""

    code = ErrorCode.NOT_FOUND


class Forbidden(Refusal):
    """Raised when the actor's role may not do this (R1, R2, R4)."""

    code = ErrorCode.FORBIDDEN


class NotEligible(Refusal):
    """Raised when the account may not have requests (self-service, or changes not
    allowed: R5)."""

    code = ErrorCode.NOT_ELIGIBLE


class InvalidState(Refusal):
    """Raised when the request is no longer pending (R13)."""

    code = ErrorCode.INVALID_STATE


class RequestPending(Refusal):
    """Raised when the account already has a pending request (R11); ``request_id`` is
    that request, to show it or to cancel it."""

    code = ErrorCode.REQUEST_PENDING

    @property
    def request_id(self) -> str | None:
        return next((d.request_id for d in self.details if d.request_id), None)


class OutOfScope(Refusal):
    """Raised when a change is of a kind requests do not handle (R8)."""

    code = ErrorCode.OUT_OF_SCOPE


class InvalidChange(Refusal):
    """Raised when a change does not fit the catalog or the subscription (R7, R9)."""

    code = ErrorCode.INVALID_CHANGE


REFUSALS: dict[str, type[Refusal]] = {
    cls.code: cls
    for cls in (
        InvalidMessage,
        UnknownAccount,
        UnknownMember,
        NotFound,
        Forbidden,
        NotEligible,
        InvalidState,
        RequestPending,
        OutOfScope,
        InvalidChange,
    )
}
"""The error class of each code of the contract."""


def refusal_of(reply: dict[str, Any]) -> Refusal:
    """The typed error of an ``ok: false`` reply; a code this client does not know yet
    is still a ``Refusal``, with its details kept as sent."""
    error = reply.get("error")
    try:
        parsed = ErrorReply.model_validate(reply).error
    except ValidationError:
        if not isinstance(error, dict) or not isinstance(error.get("code"), str):
            raise UnexpectedReply(f"a refusal without an error code: {reply!r}") from None
        details = [Detail.model_construct(**d) for d in error.get("details", [])]
        return Refusal(error["code"], str(error.get("message", "")), details)
    return REFUSALS[parsed.code](str(parsed.code), parsed.message, parsed.details)


def result_of(routing_key: str, reply: dict[str, Any], model: type[M]) -> M:
    """The ``result`` of the reply to ``routing_key`` as ``model``; the refusal raised."""
    if reply.get("ok") is not True:
        raise refusal_of(reply)
    try:
        whole = REPLIES[routing_key].model_validate(reply)
    except ValidationError as exc:
        raise UnexpectedReply(f"the reply to {routing_key} is not the contract's: {exc}") from None
    result = whole.result  # type: ignore[attr-defined]  # every ok reply has one
    if not isinstance(result, model):
        raise TypeError(f"{routing_key} answers {type(result).__name__}, not {model.__name__}")
    return result
