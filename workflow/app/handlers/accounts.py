"""account.upsert: keep the account, its subscription and its two-person approval threshold
(R23) current; void on eligibility loss (R6). A threshold changes no pending request: the
next approval is judged against it (lowering it approves nothing by itself)."""

from __future__ import annotations

from typing import Any

from policies.decision import Decision, ErrorCode
from policies.eligibility import is_eligible
from policies.facts import ProductLine
from workflow.app.context import CommandContext
from workflow.contract.messages import AccountUpsert, SubscriptionIn
from workflow.domain.catalog import Catalog
from workflow.domain.lifecycle import Facts, Request, fire
from workflow.errors import Refused
from workflow.persistence.store import Row, to_account


def upsert_account(cmd: AccountUpsert, ctx: CommandContext) -> dict[str, Any]:
    store = ctx.store
    existing = store.account(cmd.account_id, lock=True)
    if cmd.subscription is not None:
        _check_subscription(cmd.subscription, ctx.catalog, cmd.account_id)
    values: dict[str, Any] = {
        "account_id": cmd.account_id,
        "name": cmd.name,
        "type": cmd.type,
        "allows_subscription_changes": cmd.allows_subscription_changes,
        "updated_at": ctx.now,
    }
    if existing is None:
        values["created_at"] = ctx.now
    if cmd.subscription is not None:
        values["currency"] = cmd.subscription.currency
        values["billing_cycle"] = cmd.subscription.billing_cycle
    if cmd.approval_given:
        values.update(_threshold(cmd, existing))
    store.save_account(values, exists=existing is not None)
    if cmd.subscription is not None:
        store.replace_products(
            cmd.account_id,
            [ProductLine(p.product, p.plan, p.seats) for p in cmd.subscription.products],
        )
    account = store.account(cmd.account_id)
    assert account is not None
    voided = [] if existing is None else _void_if_ineligible(ctx, account)
    return {
        "account_id": cmd.account_id,
        "created": existing is None,
        "voided": voided,
        "approval": approval_view(account),
    }


def _threshold(cmd: AccountUpsert, existing: Row | None) -> dict[str, Any]:
    """The stored threshold: ``null`` removes it; its currency is the one the message names,
    else the subscription's (of this message, or on record)."""
    if cmd.approval is None:
        return {"approval_second_above": None, "approval_currency": None}
    currency = cmd.approval.currency
    if currency is None and cmd.subscription is not None:
        currency = cmd.subscription.currency
    if currency is None and existing is not None:
        currency = existing["currency"]
    return {"approval_second_above": cmd.approval.second_above, "approval_currency": currency}


def approval_view(account: Row) -> dict[str, Any] | None:
    """The account's threshold as replies and pages show it; ``None`` when it has none."""
    if account.get("approval_second_above") is None:
        return None
    return {
        "second_above": account["approval_second_above"],
        "currency": account.get("approval_currency"),
    }


def _check_subscription(sub: SubscriptionIn, catalog: Catalog, account_id: str) -> None:
    """A subscription the catalog cannot price would make every later summary wrong."""
    plans = catalog.facts().plans
    problems: list[Decision] = []
    if sub.currency not in catalog.currencies:
        problems.append(
            Decision.deny(
                None,
                ErrorCode.INVALID_CHANGE,
                f"currency {sub.currency} is not priced in the catalog "
                f"(priced: {', '.join(sorted(catalog.currencies))})",
                "subscription.currency",
            )
        )
    seen: set[str] = set()
    for i, line in enumerate(sub.products):
        where = f"subscription.products[{i}]"
        if line.product not in plans:
            problems.append(
                Decision.deny(
                    None,
                    ErrorCode.INVALID_CHANGE,
                    f"unknown product {line.product}",
                    f"{where}.product",
                )
            )
        elif line.plan not in plans[line.product]:
            problems.append(
                Decision.deny(
                    None,
                    ErrorCode.INVALID_CHANGE,
                    f"{line.product} has no plan {line.plan} "
                    f"(plans: {', '.join(plans[line.product])})",
                    f"{where}.plan",
                )
            )
        if line.product in seen:
            problems.append(
                Decision.deny(
                    None,
                    ErrorCode.INVALID_CHANGE,
                    f"{line.product} is listed twice",
                    f"{where}.product",
                )
            )
        seen.add(line.product)
    if problems:
        raise Refused(Decision.combine(problems), account_id=account_id)


def _void_if_ineligible(ctx: CommandContext, account: Any) -> list[str]:
    eligibility = is_eligible(to_account(account))
    if eligibility:
        return []
    pending_id = ctx.store.pending_request_id(account["account_id"])
    if pending_id is None:
        return []
    row = ctx.store.request(pending_id)
    assert row is not None
    request = Request(pending_id, row["account_id"], row["requester_id"], state=row["state"])
    reason = eligibility.message
    decision = fire(request, "void", Facts(at=ctx.now, account=to_account(account), reason=reason))
    assert decision.allowed, decision
    view = ctx.record(request, {"decided_at": ctx.now})
    told = {row["requester_id"], *row["notified"]}
    ctx.notify(
        "request_voided",
        ctx.members_by_id(account["account_id"], told),
        view,
        {"account": account["name"], "request_id": pending_id, "reason": reason},
    )
    return [pending_id]
