"""What the tests take from the wire contract as written (contract.md), not from the code
they check: a test that derived these from the code could not catch the code drifting."""

from __future__ import annotations

ERROR_CODES = (
    "invalid_message",
    "unknown_account",
    "unknown_member",
    "not_eligible",
    "forbidden",
    "out_of_scope",
    "invalid_change",
    "request_pending",
    "not_found",
    "invalid_state",
)
"""contract.md, Replies: the error codes in the order listed, which is their precedence
(the top-level code of a refusal is the first of its details' codes in this list)."""
