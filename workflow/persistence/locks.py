"""The advisory locks that stand for accounts: commands, the sweeper and the notifier's
records of sent mail take them, sorted, so what they write about one account is ordered."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def account_lock_key(account_id: str) -> int:
    """The advisory lock that stands for an account (a signed 64-bit key). A lock in memory,
    not on the row: locking the row wrote it, which cost WAL and a transaction id even
    for a batch that changes nothing. Two accounts sharing a key only wait for each other."""
    digest = hashlib.blake2b(account_id.encode(), digest_size=8, person=b"subreq-account").digest()
    return int.from_bytes(digest, "big", signed=True)


def account_lock_keys(accounts: Iterable[str]) -> list[int]:
    """The locks of ``accounts``, in the one order every transaction takes them."""
    return sorted({account_lock_key(a) for a in accounts})
