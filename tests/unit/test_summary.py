"""R10: the cost summary of a request, and applying its items to a subscription."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest

from policies.facts import Change, ProductLine, Subscription
from workflow.domain.catalog import Catalog, CatalogDocument, load_catalog
from workflow.domain.summary import PricingError, apply_changes, format_money, summarize


def _plan(plan_id: str, usd: str, eur: str) -> dict[str, Any]:
    """Per-seat prices; annual is a round 10 x monthly so expected values are easy to read."""
    prices = {
        currency: {"monthly": monthly, "annual": str(Decimal(monthly) * 10)}
        for currency, monthly in (("USD", usd), ("EUR", eur))
    }
    return {"id": plan_id, "name": plan_id.title(), "prices": prices}


CATALOG = Catalog(
    CatalogDocument.model_validate(
        {
            "products": [
                {
                    "id": "support",
                    "name": "Support",
                    "plans": [
                        _plan("team", "20.00", "18.00"),
                        _plan("professional", "100.00", "90.00"),
                        _plan("enterprise", "150.00", "135.00"),
                    ],
                },
                {
                    "id": "guide",
                    "name": "Guide",
                    "addable": True,
                    "plans": [
                        _plan("professional", "50.00", "45.00"),
                        _plan("enterprise", "80.00", "72.00"),
                    ],
                },
                {
                    "id": "explore",
                    "name": "Explore",
                    "addable": True,
                    "plans": [_plan("professional", "10.50", "9.99")],
                },
            ]
        }
    )
)


def _subscription(
    *lines: tuple[str, str, int], currency: str = "USD", cycle: Any = "monthly"
) -> Subscription:
    return Subscription(currency, cycle, tuple(ProductLine(*line) for line in lines))


SUPPORT_PRO_5 = _subscription(("support", "professional", 5))


def test_r10_add_seats_costs_quantity_times_the_current_plan_price() -> None:
    summary = summarize([Change("add_seats", "support", quantity=3)], SUPPORT_PRO_5, CATALOG)
    assert summary == {
        "currency": "USD",
        "billing_cycle": "monthly",
        "period": "month",
        "lines": [
            {
                "item": {"type": "add_seats", "product": "support", "quantity": 3},
                "description": "Add 3 seats to Support (Professional)",
                "current": {"product": "support", "plan": "professional", "seats": 5},
                "proposed": {"product": "support", "plan": "professional", "seats": 8},
                "cost": "300.00",
            }
        ],
        "total": "300.00",
    }


def test_r10_builtin_catalog_five_support_professional_seats_cost_575_a_month() -> None:
    summary = summarize([Change("add_seats", "support", quantity=5)], SUPPORT_PRO_5, load_catalog())
    assert summary["lines"][0]["description"] == "Add 5 seats to Support (Professional)"
    assert summary["lines"][0]["cost"] == "575.00"
    assert summary["total"] == "575.00"


def test_r10_one_seat_is_singular() -> None:
    summary = summarize([Change("add_seats", "support", quantity=1)], SUPPORT_PRO_5, CATALOG)
    assert summary["lines"][0]["description"] == "Add 1 seat to Support (Professional)"


def test_r10_add_product_costs_seats_times_its_price() -> None:
    change = Change("add_product", "guide", "enterprise", seats=2)
    (line,) = summarize([change], SUPPORT_PRO_5, CATALOG)["lines"]
    assert line == {
        "item": {"type": "add_product", "product": "guide", "plan": "enterprise", "seats": 2},
        "description": "Add Guide (Enterprise) with 2 seats",
        "current": None,
        "proposed": {"product": "guide", "plan": "enterprise", "seats": 2},
        "cost": "160.00",
    }


def test_r7_r10_add_product_without_seats_gets_as_many_as_the_largest_product() -> None:
    subscription = _subscription(("support", "professional", 5), ("guide", "professional", 12))
    change = Change("add_product", "explore", "professional")
    (line,) = summarize([change], subscription, CATALOG)["lines"]
    assert line["item"] == {"type": "add_product", "product": "explore", "plan": "professional"}
    assert line["proposed"]["seats"] == 12
    assert line["cost"] == "126.00"


def test_r7_add_product_on_an_empty_subscription_gets_one_seat() -> None:
    after = apply_changes(
        _subscription(), [Change("add_product", "guide", "professional")], CATALOG
    )
    assert after.products == (ProductLine("guide", "professional", 1),)


def test_r10_upgrade_costs_seats_times_the_price_difference() -> None:
    change = Change("upgrade_plan", "support", "enterprise")
    (line,) = summarize([change], SUPPORT_PRO_5, CATALOG)["lines"]
    assert line == {
        "item": {"type": "upgrade_plan", "product": "support", "plan": "enterprise"},
        "description": "Upgrade Support from Professional to Enterprise (5 seats)",
        "current": {"product": "support", "plan": "professional", "seats": 5},
        "proposed": {"product": "support", "plan": "enterprise", "seats": 5},
        "cost": "250.00",
    }


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_r7_r9_the_price_does_not_depend_on_the_order_of_the_items(
    order: tuple[int, ...],
) -> None:
    """Seats are added first, the upgrade costs the difference on every seat after them,
    and an added product without seats gets the largest count after them, in any order."""
    items = [
        Change("upgrade_plan", "support", "enterprise"),
        Change("add_seats", "support", quantity=2),
        Change("add_product", "guide", "professional"),
    ]
    changes = [items[i] for i in order]
    summary = summarize(changes, SUPPORT_PRO_5, CATALOG)
    by_type = {line["item"]["type"]: line for line in summary["lines"]}
    assert [line["item"]["type"] for line in summary["lines"]] == [c.type for c in changes]
    seats, upgrade, guide = by_type["add_seats"], by_type["upgrade_plan"], by_type["add_product"]
    assert seats["current"] == {"product": "support", "plan": "professional", "seats": 5}
    assert seats["proposed"] == {"product": "support", "plan": "professional", "seats": 7}
    assert seats["description"] == "Add 2 seats to Support (Professional)"
    assert seats["cost"] == "200.00"
    assert upgrade["current"] == {"product": "support", "plan": "professional", "seats": 7}
    assert upgrade["proposed"] == {"product": "support", "plan": "enterprise", "seats": 7}
    assert upgrade["cost"] == "350.00"
    assert guide["proposed"]["seats"] == 7  # the largest product after the seats item
    assert guide["cost"] == "350.00"
    assert summary["total"] == "900.00"
    after = apply_changes(SUPPORT_PRO_5, changes, CATALOG)
    assert after.products == (
        ProductLine("support", "enterprise", 7),
        ProductLine("guide", "professional", 7),
    )


def test_r10_total_is_the_sum_of_the_lines() -> None:
    changes = [
        Change("add_seats", "support", quantity=1),
        Change("add_product", "explore", "professional", seats=3),
    ]
    summary = summarize(changes, SUPPORT_PRO_5, CATALOG)
    costs = [Decimal(line["cost"]) for line in summary["lines"]]
    assert costs == [Decimal("100.00"), Decimal("31.50")]
    assert summary["total"] == "131.50"
    assert Decimal(summary["total"]) == sum(costs)


def test_r10_annual_billing_prices_per_year() -> None:
    subscription = _subscription(("support", "professional", 5), cycle="annual")
    summary = summarize([Change("add_seats", "support", quantity=2)], subscription, CATALOG)
    assert summary["billing_cycle"] == "annual"
    assert summary["period"] == "year"
    assert summary["total"] == "2000.00"


def test_r10_prices_in_the_subscription_currency() -> None:
    subscription = _subscription(("support", "professional", 5), currency="EUR")
    summary = summarize([Change("add_product", "explore", "professional")], subscription, CATALOG)
    assert summary["currency"] == "EUR"
    assert summary["total"] == "49.95"


def test_r10_money_is_a_string_with_two_decimals() -> None:
    summary = summarize([Change("add_seats", "support", quantity=1)], SUPPORT_PRO_5, CATALOG)
    for money in (summary["total"], summary["lines"][0]["cost"]):
        assert isinstance(money, str)
        assert len(money.split(".")[1]) == 2


def test_r10_no_items_cost_nothing() -> None:
    summary = summarize([], SUPPORT_PRO_5, CATALOG)
    assert summary["lines"] == []
    assert summary["total"] == "0.00"


def test_r10_a_subscription_without_currency_cannot_be_priced() -> None:
    subscription = Subscription(None, None, ())
    with pytest.raises(PricingError, match="no currency or billing cycle"):
        summarize([Change("add_product", "guide", "professional")], subscription, CATALOG)


def test_r10_a_currency_the_catalog_does_not_price_is_a_pricing_error() -> None:
    subscription = _subscription(("support", "professional", 5), currency="JPY")
    with pytest.raises(PricingError, match=r"no monthly price in JPY for Support \(Professional\)"):
        summarize([Change("add_seats", "support", quantity=1)], subscription, CATALOG)


def test_r12_apply_changes_returns_the_new_subscription_in_order() -> None:
    changes = [
        Change("upgrade_plan", "support", "enterprise"),
        Change("add_seats", "support", quantity=2),
        Change("add_product", "guide", "professional", seats=3),
    ]
    after = apply_changes(SUPPORT_PRO_5, changes, CATALOG)
    assert after == _subscription(("support", "enterprise", 7), ("guide", "professional", 3))
    assert SUPPORT_PRO_5.products == (ProductLine("support", "professional", 5),)


@pytest.mark.parametrize(
    "change",
    [
        Change("add_seats", "guide", quantity=1),  # not owned
        Change("add_seats", "support", quantity=0),
        Change("add_seats", "support"),
        Change("add_product", "support", "team"),  # already owned
        Change("add_product", "guide", "team"),  # no such plan of guide
        Change("add_product", "guide", "professional", seats=0),
        Change("add_product", "guide"),
        Change("upgrade_plan", "support", "professional"),  # same plan
        Change("upgrade_plan", "support", "team"),  # lower plan
        Change("upgrade_plan", "guide", "enterprise"),  # not owned
        Change("remove_seats", "support", quantity=1),  # out of scope (R8)
    ],
)
def test_r12_an_item_that_does_not_apply_raises_value_error(change: Change) -> None:
    with pytest.raises(ValueError, match=r"Change\("):
        apply_changes(SUPPORT_PRO_5, [change], CATALOG)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("575", "575.00"),
        ("0", "0.00"),
        ("-0.001", "0.00"),
        ("1.005", "1.01"),
        ("1E+3", "1000.00"),
        ("-12.5", "-12.50"),
        ("12345678.9", "12345678.90"),
    ],
)
def test_r10_format_money(value: str, expected: str) -> None:
    assert format_money(Decimal(value)) == expected


def test_format_money_refuses_what_is_not_an_amount() -> None:
    with pytest.raises(ValueError, match="not an amount"):
        format_money(Decimal("NaN"))
