"""member.upsert / member.remove: the directory every role check reads (R3)."""

from __future__ import annotations

from typing import Any

from policies.decision import ErrorCode
from workflow.app.context import CommandContext
from workflow.app.handlers.lookups import account_or_refuse, member_or_refuse
from workflow.contract.messages import MemberRemove, MemberUpsert
from workflow.errors import Refused


def upsert_member(cmd: MemberUpsert, ctx: CommandContext) -> dict[str, Any]:
    store = ctx.store
    account_or_refuse(store, cmd.account_id)
    existing = store.member(cmd.account_id, cmd.user_id)
    if cmd.role == "owner":
        others = [
            m for m in store.members(cmd.account_id, ["owner"]) if m["user_id"] != cmd.user_id
        ]
        if others:
            raise Refused.because(
                ErrorCode.INVALID_CHANGE,
                f"account {cmd.account_id} already has an owner ({others[0]['user_id']}); "
                "give that member another role first: an account has exactly one owner",
                field="role",
                account_id=cmd.account_id,
            )
    store.save_member(
        {
            "account_id": cmd.account_id,
            "user_id": cmd.user_id,
            "name": cmd.name,
            "email": cmd.email,
            "role": cmd.role,
            "locale": cmd.locale,
            "updated_at": ctx.now,
        },
        exists=existing is not None,
    )
    return {"account_id": cmd.account_id, "user_id": cmd.user_id, "created": existing is None}


def remove_member(cmd: MemberRemove, ctx: CommandContext) -> dict[str, Any]:
    account_or_refuse(ctx.store, cmd.account_id)
    member_or_refuse(ctx.store, cmd.account_id, cmd.user_id, "user_id", acting=False)
    ctx.store.remove_member(cmd.account_id, cmd.user_id, ctx.now)
    return {"account_id": cmd.account_id, "user_id": cmd.user_id, "removed": True}
