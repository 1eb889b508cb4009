"""Decision values returned by every rule: allowed, or denied with reasons."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Error codes of the wire contract, in the contract's order, which is the order of
    precedence: a refusal with several codes carries the first of them."""

    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_ACCOUNT = "unknown_account"
    UNKNOWN_MEMBER = "unknown_member"
    NOT_ELIGIBLE = "not_eligible"
    FORBIDDEN = "forbidden"
    OUT_OF_SCOPE = "out_of_scope"
    INVALID_CHANGE = "invalid_change"
    REQUEST_PENDING = "request_pending"
    NOT_FOUND = "not_found"
    INVALID_STATE = "invalid_state"


@dataclass(frozen=True, slots=True)
class Denial:
    """One reason a command is refused, tied to the rule that refuses it."""

    rule: str | None
    code: ErrorCode
    reason: str
    field: str | None = None
    request_id: str | None = None
    """The request the refusal is about when it is not the command's own (R11: the
    pending one that blocks a submit), so a client need not read it out of the reason."""

    def as_detail(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"code": str(self.code), "reason": self.reason}
        if self.rule is not None:
            detail["rule"] = self.rule
        if self.field is not None:
            detail["field"] = self.field
        if self.request_id is not None:
            detail["request_id"] = self.request_id
        return detail


@dataclass(frozen=True, slots=True)
class Decision:
    """Allowed when it holds no denial; several denials are all kept."""

    denials: tuple[Denial, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.denials

    def __bool__(self) -> bool:
        return self.allowed

    @classmethod
    def deny(
        cls, rule: str | None, code: ErrorCode, reason: str, field: str | None = None
    ) -> Decision:
        return cls((Denial(rule, code, reason, field),))

    @classmethod
    def combine(cls, decisions: Iterable[Decision]) -> Decision:
        return cls(tuple(d for decision in decisions for d in decision.denials))

    def __add__(self, other: Decision) -> Decision:
        return Decision(self.denials + other.denials)

    @property
    def code(self) -> ErrorCode | None:
        """The code a reply carries: the first denial's, by contract precedence."""
        if not self.denials:
            return None
        order = list(ErrorCode)
        return min((d.code for d in self.denials), key=order.index)

    @property
    def message(self) -> str:
        """One line a person can act on: the reasons of the leading code."""
        code = self.code
        return "; ".join(d.reason for d in self.denials if d.code == code)


ALLOW = Decision()
