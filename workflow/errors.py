"""The workflow's error hierarchy; library errors are translated at its boundary."""

from __future__ import annotations

from policies.decision import Decision, ErrorCode


class SubreqError(Exception):
    """Root of every error subreq raises on purpose."""


class Refused(SubreqError):
    """Raised when a rule refuses a command: a normal answer, recorded in the audit log."""

    def __init__(
        self,
        decision: Decision,
        *,
        account_id: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(decision.message)
        self.decision = decision
        self.account_id = account_id
        self.request_id = request_id

    @classmethod
    def because(
        cls,
        code: ErrorCode,
        reason: str,
        *,
        rule: str | None = None,
        field: str | None = None,
        account_id: str | None = None,
        request_id: str | None = None,
    ) -> Refused:
        return cls(
            Decision.deny(rule, code, reason, field), account_id=account_id, request_id=request_id
        )


class Invalid(SubreqError):
    """Raised while parsing when the message itself is unusable (never after a lookup)."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.message)
        self.decision = decision


class TransientError(SubreqError):
    """Raised when the database failed for a reason that a retry may cure (lost
    connection, deadlock, serialisation failure): the command must be retried, not refused."""


class Conflict(SubreqError):
    """Raised at commit when another transaction won a unique key first (an idempotency
    record, or R11's one pending request per account): run the command again to see it."""

    def __init__(self, message: str, *, one_pending: bool = False) -> None:
        super().__init__(message)
        self.one_pending = one_pending


class DatabaseUnavailable(TransientError):
    """Raised when the database of ``SUBREQ_DATABASE_URL`` cannot be opened or reached."""


class SchemaMissing(SubreqError):
    """Raised when the database has none of subreq's tables: it was never migrated."""


class ConfigurationError(SubreqError):
    """Raised when a setting or the catalog is unusable; the message names what to fix."""
