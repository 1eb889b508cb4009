"""What a request may change (R7-R9), judged against the catalog and the subscription."""

from __future__ import annotations

from collections.abc import Sequence

from policies.decision import ALLOW, Decision, ErrorCode
from policies.facts import (
    GRANTABLE_CHANGES,
    OUT_OF_SCOPE_CHANGES,
    CatalogFacts,
    Change,
    Subscription,
)

_DIRECTLY = "the owner or a billing admin can do it directly"
_OUT_OF_SCOPE_REASONS = {
    "remove_seats": f"removing seats cannot be requested; {_DIRECTLY}",
    "remove_product": f"removing a product cannot be requested; {_DIRECTLY}",
    "downgrade_plan": f"downgrading a plan cannot be requested; {_DIRECTLY}",
    "change_billing_cycle": f"changing the billing cycle cannot be requested; {_DIRECTLY}",
    "change_payment_method": f"payment methods are never requestable; {_DIRECTLY}",
    "manage_invoice": f"invoices are never requestable; {_DIRECTLY}",
    "cancel_account": f"cancelling the account cannot be requested; {_DIRECTLY}",
}


def _invalid(reason: str, field: str) -> Decision:
    return Decision.deny("R9", ErrorCode.INVALID_CHANGE, reason, field)


def _listing(items: Sequence[str]) -> str:
    return ", ".join(items) if items else "none"


def in_scope(change: Change, index: int) -> Decision:
    """R8: removals, downgrades, billing, payments and invoices are never requestable."""
    if change.type not in OUT_OF_SCOPE_CHANGES:
        return ALLOW
    return Decision.deny(
        "R8",
        ErrorCode.OUT_OF_SCOPE,
        _OUT_OF_SCOPE_REASONS[change.type],
        f"changes[{index}].type",
    )


def is_addable(change: Change, index: int, catalog: CatalogFacts) -> Decision:
    """R7: only the catalog's addable products may be added by request."""
    product = change.product
    if (
        change.type != "add_product"
        or product is None
        or product not in catalog.plans
        or product in catalog.addable
    ):
        return ALLOW
    addable = sorted(catalog.display(p) for p in catalog.addable)
    return Decision.deny(
        "R7",
        ErrorCode.INVALID_CHANGE,
        f"{catalog.display(product)} cannot be added by request; "
        f"products available to add: {_listing(addable)}",
        f"changes[{index}].product",
    )


def _count(value: int | None, what: str, field: str) -> Decision:
    """Quantities are whole numbers of at least one: a request never takes anything away."""
    if value is None:
        return _invalid(f"{what} is required", field)
    if value < 1:
        return _invalid(f"{what} must be at least 1, not {value}", field)
    return ALLOW


def _plan_of(change: Change, product: str, at: str, catalog: CatalogFacts) -> Decision:
    """The requested plan must be one the catalog offers for that product."""
    plans = catalog.plans[product]
    name = catalog.display(product)
    if change.plan is None:
        return _invalid(f"a plan for {name} is required: one of {_listing(plans)}", f"{at}.plan")
    if change.plan not in plans:
        return _invalid(
            f"{name} has no plan {change.plan!r}: choose one of {_listing(plans)}", f"{at}.plan"
        )
    return ALLOW


def is_valid(
    change: Change, index: int, subscription: Subscription, catalog: CatalogFacts
) -> Decision:
    """R9: one denial per problem of the item, each naming the field to fix."""
    at = f"changes[{index}]"
    if change.type in OUT_OF_SCOPE_CHANGES:
        return ALLOW
    if change.type not in GRANTABLE_CHANGES:
        return _invalid(
            f"unknown change type {change.type!r}: use one of {_listing(GRANTABLE_CHANGES)}",
            f"{at}.type",
        )
    if subscription.currency is None:
        # Reported with the same wording for every item, so callers can report it once.
        return _invalid(
            "the account has no subscription on record, so there is nothing to change yet",
            "changes",
        )
    product = change.product
    if product is None:
        return _invalid(f"{change.type} needs a product", f"{at}.product")
    if product not in catalog.plans:
        known = sorted(catalog.display(p) for p in catalog.plans)
        return _invalid(
            f"unknown product {product!r}: the catalog offers {_listing(known)}",
            f"{at}.product",
        )
    name = catalog.display(product)
    owned = subscription.line(product)
    if change.type == "add_seats":
        not_owned = (
            _invalid(
                f"the account does not have {name}: add the product instead of seats",
                f"{at}.product",
            )
            if owned is None
            else ALLOW
        )
        return not_owned + _count(
            change.quantity, f"the number of seats to add to {name}", f"{at}.quantity"
        )
    if change.type == "add_product":
        already = (
            _invalid(
                f"the account already has {name} (plan {owned.plan}): "
                "add seats or upgrade its plan instead",
                f"{at}.product",
            )
            if owned is not None
            else ALLOW
        )
        seats = (
            ALLOW
            if change.seats is None
            else _count(change.seats, f"the number of seats of {name}", f"{at}.seats")
        )
        return already + _plan_of(change, product, at, catalog) + seats
    # upgrade_plan
    plan = _plan_of(change, product, at, catalog)
    if owned is None:
        return (
            _invalid(
                f"the account does not have {name}: add the product instead of upgrading it",
                f"{at}.product",
            )
            + plan
        )
    if change.plan is None or not plan:
        return plan
    return _is_higher(owned.plan, change.plan, name, catalog.plans[product], f"{at}.plan")


def _is_higher(
    current: str, requested: str, name: str, plans: Sequence[str], field: str
) -> Decision:
    """An upgrade moves strictly up; the catalog lists a product's plans lowest first."""
    if current not in plans:
        return _invalid(
            f"{name} is on plan {current!r}, which the catalog does not rank, "
            "so no upgrade from it can be judged",
            field,
        )
    higher = plans[plans.index(current) + 1 :]
    if requested in higher:
        return ALLOW
    if not higher:
        return _invalid(f"{name} is already on its highest plan, {current}", field)
    relation = "the same as" if requested == current else "lower than"
    return _invalid(
        f"{requested} is {relation} the current plan {current} of {name}: "
        f"choose a higher plan, one of {_listing(higher)}",
        field,
    )


_CONFLICTS: dict[frozenset[str], str] = {
    frozenset({"add_seats"}): "both add seats to {p}; merge them into one item",
    frozenset({"add_product"}): "both add {p}; keep one item",
    frozenset({"upgrade_plan"}): "both upgrade {p}; keep one item with the plan wanted",
    frozenset({"add_product", "add_seats"}): "{p} is added as a new product, "
    "so give its seats in the add_product item",
    frozenset({"add_product", "upgrade_plan"}): "{p} is added as a new product, "
    "so choose its plan in the add_product item",
}
"""Pairs of change types that cannot meet on one product, whichever comes first."""


def contradictions(changes: Sequence[Change]) -> Decision:
    """R9: items that repeat or fight each other on one product; the later one is blamed."""
    denials = []
    earlier_by_product: dict[str, list[tuple[int, str]]] = {}
    for index, change in enumerate(changes):
        if change.product is None or change.type not in GRANTABLE_CHANGES:
            continue
        earlier_items = earlier_by_product.setdefault(change.product, [])
        for earlier, kind in earlier_items:
            template = _CONFLICTS.get(frozenset({kind, change.type}))
            if template is not None:
                reason = template.format(p=repr(change.product))
                denials.append(
                    _invalid(
                        f"changes[{index}] conflicts with changes[{earlier}]: {reason}",
                        f"changes[{index}]",
                    )
                )
                break
        earlier_items.append((index, change.type))
    return Decision.combine(denials)


def validate_changes(
    changes: Sequence[Change], subscription: Subscription, catalog: CatalogFacts
) -> Decision:
    """R7-R9 over the whole request, so the requester sees every problem at once."""
    if not changes:
        return _invalid("a request needs at least one change", "changes")
    decisions = []
    for index, change in enumerate(changes):
        scope = in_scope(change, index)
        if not scope:
            decisions.append(scope)
            continue
        decisions += [
            is_addable(change, index, catalog),
            is_valid(change, index, subscription, catalog),
        ]
    decisions.append(contradictions(changes))
    found = Decision.combine(decisions)
    # A problem of the request as a whole (no subscription) is found once per item: report it once.
    return Decision(tuple(dict.fromkeys(found.denials)))
