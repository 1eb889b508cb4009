"""Lookups every handler starts with, refusing with the contract's codes when they fail."""

from __future__ import annotations

from policies.decision import ErrorCode
from workflow.errors import Refused
from workflow.persistence.store import Row, Store


def account_or_refuse(store: Store, account_id: str) -> Row:
    """The account, locked for the rest of the transaction so its commands serialise."""
    account = store.account(account_id, lock=True)
    if account is None:
        raise Refused.because(
            ErrorCode.UNKNOWN_ACCOUNT,
            f"account {account_id} is unknown: publish account.upsert first",
            field="account_id",
            account_id=account_id,
        )
    return account


def member_or_refuse(
    store: Store, account_id: str, user_id: str, field: str, *, acting: bool = True
) -> Row:
    """The current member ``user_id``. An ``acting`` user who was removed is refused as
    ``forbidden`` (R3): the directory knows them, and no longer lets them act."""
    member = store.member(account_id, user_id)
    if member is None and acting and store.was_removed(account_id, user_id):
        raise Refused.because(
            ErrorCode.FORBIDDEN,
            f"user {user_id} was removed from account {account_id} and can no longer act on "
            "its requests",
            rule="R3",
            field=field,
            account_id=account_id,
        )
    if member is None:
        raise Refused.because(
            ErrorCode.UNKNOWN_MEMBER,
            f"user {user_id} is not a member of account {account_id}",
            rule="R3",
            field=field,
            account_id=account_id,
        )
    return member


def request_and_account(store: Store, request_id: str) -> tuple[Row, Row]:
    """The request and its locked account; the request is read again after the lock so a
    decision racing with another sees the state that other one committed."""
    row = store.request(request_id)
    if row is None:
        raise Refused.because(
            ErrorCode.NOT_FOUND,
            f"request {request_id} does not exist",
            field="request_id",
            request_id=request_id,
        )
    account = store.account(row["account_id"], lock=True)
    assert account is not None
    locked = store.request(request_id)
    assert locked is not None
    return locked, account
