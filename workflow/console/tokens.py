"""Link tokens (console.md C3): 256 random bits, URL-safe; only their SHA-256 is stored."""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_BYTES = 32
"""256 bits, twice what C3 asks for."""
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
"""What ``secrets.token_urlsafe(32)`` gives: anything else is malformed (answered 404)."""


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """The stored form of a token: a database leak gives no working link."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def well_formed(token: str) -> bool:
    return TOKEN_PATTERN.fullmatch(token) is not None
