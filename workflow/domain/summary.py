"""What a request changes and what it costs (R10), shown as a preview and with the request.

Items apply in a fixed order whatever the order they were given in: every ``add_seats``
first, then every ``upgrade_plan`` (priced on the seats after them, R9), then every
``add_product`` (whose default seat count is the largest after them, R7), so reordering
a request never changes its price. Lines are shown in the request's order. Money stays ``Decimal``
throughout and leaves as a string with two decimals (the contract's money format), so no
float ever rounds a price.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from policies.facts import Change, ProductLine, Subscription
from workflow.domain.catalog import CENT, BillingCycle, Catalog
from workflow.errors import SubreqError

PERIODS: dict[BillingCycle, str] = {"monthly": "month", "annual": "year"}


class PricingError(SubreqError, ValueError):
    """Raised when a line cannot be priced: the subscription has no currency or billing
    cycle on record, or the catalog has no price for it in them."""


@dataclass(frozen=True, slots=True)
class _Step:
    """One item applied: the product line before and after, and the whole subscription after."""

    current: ProductLine | None
    proposed: ProductLine
    after: Subscription


def default_seats(subscription: Subscription) -> int:
    """Seats of an added product when the item names none: as many as the largest product (R7)."""
    return max([1, *(line.seats for line in subscription.products)])


def apply_changes(
    subscription: Subscription, changes: Sequence[Change], catalog: Catalog
) -> Subscription:
    """The subscription after the items, in order.

    Expects validated items (R9) but still raises ``ValueError`` on one that does not
    apply, so an approval can never write a subscription the rules would refuse (R12).
    """
    return _applied(subscription, changes, catalog)[1]


def summarize(
    changes: Sequence[Change], subscription: Subscription, catalog: Catalog
) -> dict[str, Any]:
    """The JSON-ready summary: per item the current and proposed line and the cost it adds
    per billing period, and the total, in the subscription's currency and billing cycle."""
    currency, cycle = subscription.currency, subscription.billing_cycle
    if currency is None or cycle is None:
        raise PricingError("the subscription has no currency or billing cycle on record")
    lines: list[dict[str, Any]] = []
    total = Decimal(0)
    steps, _ = _applied(subscription, changes, catalog)
    for change, step in zip(changes, steps, strict=True):
        # The difference in recurring cost covers all three item types: extra seats at the
        # current plan, a new line, or the same seats at the new plan minus the old one.
        cost = _line_cost(step.proposed, catalog, currency, cycle)
        if step.current is not None:
            cost -= _line_cost(step.current, catalog, currency, cycle)
        total += cost
        lines.append(
            {
                "item": _item_dict(change),
                "description": _describe(change, step, catalog),
                "current": _line_dict(step.current) if step.current is not None else None,
                "proposed": _line_dict(step.proposed),
                "cost": format_money(cost),
            }
        )
    return {
        "currency": currency,
        "billing_cycle": cycle,
        "period": PERIODS[cycle],
        "lines": lines,
        "total": format_money(total),
    }


def format_money(value: Decimal) -> str:
    """Exactly two decimals, never an exponent nor "-0.00": "575.00", "0.00"."""
    if not value.is_finite():
        raise ValueError(f"not an amount of money: {value}")
    cents = value.quantize(CENT, rounding=ROUND_HALF_UP)
    if cents.is_zero():
        cents = abs(cents)
    return f"{cents:.2f}"


APPLY_ORDER = {"add_seats": 0, "upgrade_plan": 1, "add_product": 2}
"""The order items apply in (R7, R9 clarified): it fixes what each one costs."""


def _applied(
    subscription: Subscription, changes: Sequence[Change], catalog: Catalog
) -> tuple[list[_Step], Subscription]:
    """Each item's step, in the request's order, and the subscription after all of them."""
    steps: dict[int, _Step] = {}
    order = sorted(range(len(changes)), key=lambda i: APPLY_ORDER.get(changes[i].type, 3))
    for index in order:
        steps[index] = _apply(subscription, changes[index], catalog)
        subscription = steps[index].after
    return [steps[i] for i in range(len(changes))], subscription


def _apply(subscription: Subscription, change: Change, catalog: Catalog) -> _Step:
    if change.type == "add_seats":
        line = _owned(subscription, change)
        quantity = _at_least_one(change.quantity, "quantity", change)
        return _replaced(subscription, line, replace(line, seats=line.seats + quantity))
    if change.type == "add_product":
        product = _product(change)
        if subscription.line(product) is not None:
            raise ValueError(f"{change}: the account already has {product!r}")
        seats = (
            default_seats(subscription)
            if change.seats is None
            else _at_least_one(change.seats, "seats", change)
        )
        added = ProductLine(product, _catalog_plan(change, product, catalog), seats)
        return _Step(None, added, replace(subscription, products=(*subscription.products, added)))
    if change.type == "upgrade_plan":
        line = _owned(subscription, change)
        plan = _catalog_plan(change, line.product, catalog)
        order = catalog.facts().plans[line.product]
        if line.plan not in order or order.index(plan) <= order.index(line.plan):
            raise ValueError(f"{change}: {plan!r} is not a higher plan than {line.plan!r}")
        return _replaced(subscription, line, replace(line, plan=plan))
    raise ValueError(f"{change}: {change.type!r} is not a change that can be applied")


def _replaced(subscription: Subscription, old: ProductLine, new: ProductLine) -> _Step:
    products = tuple(new if line is old else line for line in subscription.products)
    return _Step(old, new, replace(subscription, products=products))


def _product(change: Change) -> str:
    if change.product is None:
        raise ValueError(f"{change}: no product")
    return change.product


def _owned(subscription: Subscription, change: Change) -> ProductLine:
    line = subscription.line(_product(change))
    if line is None:
        raise ValueError(f"{change}: the account has no {change.product!r}")
    return line


def _catalog_plan(change: Change, product: str, catalog: Catalog) -> str:
    if change.plan is None or change.plan not in catalog.facts().plans.get(product, ()):
        raise ValueError(f"{change}: the catalog has no plan {change.plan!r} of {product!r}")
    return change.plan


def _at_least_one(value: int | None, name: str, change: Change) -> int:
    if value is None or value < 1:
        raise ValueError(f"{change}: {name} must be at least 1")
    return value


def _line_cost(line: ProductLine, catalog: Catalog, currency: str, cycle: BillingCycle) -> Decimal:
    price = catalog.price(line.product, line.plan, currency, cycle)
    if price is None:
        raise PricingError(
            f"the catalog has no {cycle} price in {currency} for "
            f"{_display(line.product, line.plan, catalog)}"
        )
    return price * line.seats


def _describe(change: Change, step: _Step, catalog: Catalog) -> str:
    new = step.proposed
    if step.current is None:
        return f"Add {_display(new.product, new.plan, catalog)} with {_seats(new.seats)}"
    old = step.current
    if change.type == "add_seats":
        added = new.seats - old.seats
        return f"Add {_seats(added)} to {_display(new.product, new.plan, catalog)}"
    return (
        f"Upgrade {catalog.facts().display(new.product)} from "
        f"{catalog.plan_name(old.product, old.plan)} to {catalog.plan_name(new.product, new.plan)}"
        f" ({_seats(new.seats)})"
    )


def _display(product: str, plan: str, catalog: Catalog) -> str:
    return f"{catalog.facts().display(product)} ({catalog.plan_name(product, plan)})"


def _seats(count: int) -> str:
    return f"{count} seat" if count == 1 else f"{count} seats"


def _item_dict(change: Change) -> dict[str, Any]:
    """The item as requested, without the fields its type does not use."""
    values = ((f.name, getattr(change, f.name)) for f in fields(change))
    return {name: value for name, value in values if value is not None}


def _line_dict(line: ProductLine) -> dict[str, Any]:
    return {"product": line.product, "plan": line.plan, "seats": line.seats}
