"""The console's own refusals, audited like a refused command (R15): a form without its
CSRF token, an oversize body, a forged field, a malformed or unknown token, a request of
another account. Nothing else is recorded for them."""

from __future__ import annotations

from datetime import datetime

from policies.decision import ErrorCode
from workflow.persistence.database import Database

COMMAND_LIMIT = 64


def audit_refusal(
    db: Database,
    now: datetime,
    *,
    channel: str,
    command: str,
    code: ErrorCode,
    message: str,
    actor_id: str | None = None,
    account_id: str | None = None,
    request_id: str | None = None,
) -> None:
    with db.store(lock=False) as store:
        store.channel = channel
        store.audit(
            {
                "at": now,
                "command": command[:COMMAND_LIMIT],
                "idempotency_key": None,
                "actor_id": actor_id[:128] if actor_id else None,
                "account_id": account_id[:128] if account_id else None,
                "request_id": request_id[:128] if request_id else None,
                "code": str(code),
                "message": message,
                "details": [],
            }
        )
