"""Decision comments (R19): the requester is owed a reason for a rejection."""

from __future__ import annotations

from policies.decision import ALLOW, Decision, ErrorCode


def reject_has_comment(decision: str, comment: str | None) -> Decision:
    """R19: judged from the message alone, so a missing reason is an invalid message."""
    if decision != "reject" or (comment is not None and comment.strip()):
        return ALLOW
    return Decision.deny(
        "R19",
        ErrorCode.INVALID_MESSAGE,
        "a rejection needs a comment telling the requester why",
        "comment",
    )
