"""Request lifecycle guards: one pending request per account (R11), final states stay (R13)."""

from __future__ import annotations

from policies.decision import ALLOW, Decision, Denial, ErrorCode


def no_other_pending(pending_request_id: str | None) -> Decision:
    """R11: a second submit is refused and told which request blocks it."""
    if pending_request_id is None:
        return ALLOW
    return Decision(
        (
            Denial(
                "R11",
                ErrorCode.REQUEST_PENDING,
                f"request {pending_request_id} is already pending for this account; "
                "it must be decided or cancelled first",
                request_id=pending_request_id,
            ),
        )
    )


def is_pending(state: str, request_id: str) -> Decision:
    """R13: only a pending request moves; the refusal names the state it is in."""
    if state == "pending":
        return ALLOW
    return Decision.deny(
        "R13",
        ErrorCode.INVALID_STATE,
        f"request {request_id} is already {state}; "
        "only a pending request can be decided or cancelled",
    )
