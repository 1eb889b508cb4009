"""Pure business rules of subreq (R1-R23 of the domain rules).

Every rule is a function over plain data that returns a :class:`Decision`.
Nothing here performs I/O or knows about the database or the broker, so the
rules can be read, tested and reused on their own.
"""

from policies.decision import ALLOW, Decision, Denial, ErrorCode

__all__ = ["ALLOW", "Decision", "Denial", "ErrorCode"]
