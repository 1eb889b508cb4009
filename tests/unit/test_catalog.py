"""The catalog file: the built-in defaults, and clear errors for a broken replacement."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from workflow.domain.catalog import Catalog, CatalogDocument, CatalogError, load_catalog

ALL_PLANS = ("team", "growth", "professional", "enterprise", "enterprise_plus")


def _plan(plan_id: str, monthly: str = "10.00", annual: str = "96.00") -> dict[str, Any]:
    return {
        "id": plan_id,
        "name": plan_id.title(),
        "prices": {"USD": {"monthly": monthly, "annual": annual}},
    }


VALID: dict[str, Any] = {
    "products": [
        {"id": "support", "name": "Support", "addable": False, "plans": [_plan("team")]},
        {"id": "guide", "name": "Guide", "addable": True, "plans": [_plan("professional")]},
    ]
}


def _write(tmp_path: Path, content: Any) -> Path:
    path = tmp_path / "catalog.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content), "utf-8")
    return path


def _problems(tmp_path: Path, content: Any) -> CatalogError:
    path = _write(tmp_path, content)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(path) in str(caught.value)
    return caught.value


_DELETE = object()


def _broken(**edits: Any) -> dict[str, Any]:
    """A copy of VALID with edits keyed by path, ``__`` between parts (``products__0__id``)."""
    data = copy.deepcopy(VALID)
    for dotted, value in edits.items():
        *parents, last = dotted.split("__")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        key: Any = int(last) if last.isdigit() else last
        if value is _DELETE:
            del node[key]
        else:
            node[key] = value
    return data


# --- the built-in catalog ------------------------------------------------------------


@pytest.fixture(scope="module")
def builtin() -> Catalog:
    return load_catalog()


def test_r7_builtin_addable_products_are_the_default_four(builtin: Catalog) -> None:
    assert builtin.facts().addable == {"guide", "explore", "collaboration", "productivity_pack"}


def test_builtin_products_in_order_with_display_names(builtin: Catalog) -> None:
    assert [(p.id, p.name) for p in builtin.products] == [
        ("support", "Support"),
        ("suite", "Suite"),
        ("guide", "Guide"),
        ("explore", "Explore"),
        ("collaboration", "Collaboration"),
        ("productivity_pack", "Productivity Pack"),
    ]
    assert builtin.facts().display("productivity_pack") == "Productivity Pack"


def test_r9_builtin_plans_are_ordered_lowest_first(builtin: Catalog) -> None:
    plans = builtin.facts().plans
    assert plans["support"] == ALL_PLANS
    assert plans["suite"] == ALL_PLANS
    assert plans["guide"] == ("professional", "enterprise", "enterprise_plus")
    for product, order in plans.items():
        assert list(order) == sorted(order, key=ALL_PLANS.index), product


def test_r10_builtin_support_professional_costs_115_a_month_in_usd(builtin: Catalog) -> None:
    assert builtin.price("support", "professional", "USD", "monthly") == Decimal("115.00")
    assert builtin.price("support", "professional", "USD", "annual") == Decimal("1104.00")
    assert builtin.plan_name("support", "enterprise_plus") == "Enterprise Plus"


def test_r10_builtin_prices_every_plan_in_each_currency_and_cycle(builtin: Catalog) -> None:
    assert builtin.currencies == {"USD", "EUR", "GBP"}
    for product in builtin.products:
        for plan in product.plans:
            assert set(plan.prices) == builtin.currencies
            for prices in plan.prices.values():
                assert prices.monthly > 0
                assert prices.annual == (prices.monthly * 12 * Decimal("0.8")).quantize(
                    Decimal("0.01")
                )


def test_builtin_higher_plans_cost_more(builtin: Catalog) -> None:
    for product in builtin.products:
        for currency in builtin.currencies:
            monthly = [plan.prices[currency].monthly for plan in product.plans]
            assert monthly == sorted(monthly), (product.id, currency)


def test_facts_are_built_once(builtin: Catalog) -> None:
    assert builtin.facts() is builtin.facts()


def test_lookups_of_unknown_things_return_none_or_the_id(builtin: Catalog) -> None:
    assert builtin.product("support") is not None
    assert builtin.product("nope") is None
    assert builtin.price("nope", "team", "USD", "monthly") is None
    assert builtin.price("guide", "team", "USD", "monthly") is None
    assert builtin.price("support", "team", "JPY", "monthly") is None
    assert builtin.plan_name("support", "legacy") == "legacy"


# --- a replacement file --------------------------------------------------------------


def test_loads_a_file_given_as_str_or_path(tmp_path: Path) -> None:
    path = _write(tmp_path, VALID)
    for given in (path, str(path)):
        catalog = load_catalog(given)
        assert catalog.facts().addable == {"guide"}
        assert catalog.currencies == {"USD"}


def test_money_is_kept_to_the_cent_whether_written_as_string_or_number(tmp_path: Path) -> None:
    data = _broken(products__0__plans__0__prices__USD={"monthly": "115", "annual": 1104.5})
    catalog = load_catalog(_write(tmp_path, data))
    assert str(catalog.price("support", "team", "USD", "monthly")) == "115.00"
    assert str(catalog.price("support", "team", "USD", "annual")) == "1104.50"


def test_catalog_error_is_a_value_error() -> None:
    assert issubclass(CatalogError, ValueError)


def test_bad_json_names_line_and_column(tmp_path: Path) -> None:
    error = _problems(tmp_path, '{\n  "products": [\n    {"id": "support",}\n  ]\n}\n')
    assert error.problems == (
        "line 3, column 22: Expecting property name enclosed in double quotes",
    )
    assert "line 3" in str(error)


def test_json_key_written_twice_is_refused(tmp_path: Path) -> None:
    text = json.dumps(VALID).replace('"addable": false', '"addable": false, "addable": true')
    error = _problems(tmp_path, text)
    assert "'addable' appears twice" in str(error)


def test_missing_price_names_the_field_path(tmp_path: Path) -> None:
    error = _problems(tmp_path, _broken(products__0__plans__0__prices__USD__monthly=_DELETE))
    assert error.problems == ("products.0.plans.0.prices.USD.monthly: required field is missing",)


def test_unknown_field_names_the_field_path(tmp_path: Path) -> None:
    error = _problems(tmp_path, _broken(products__1__plans__0__colour="blue"))
    assert error.problems == ("products.1.plans.0.colour: unknown field",)


def test_r9_duplicate_plan_names_the_product_plans(tmp_path: Path) -> None:
    data = _broken(products__0__plans=[_plan("team"), _plan("growth"), _plan("team")])
    error = _problems(tmp_path, data)
    assert error.problems == (
        "products.0.plans: plan ids must be unique, repeated: 'team' (at 0, 2)",
    )


def test_duplicate_product_is_refused(tmp_path: Path) -> None:
    error = _problems(tmp_path, _broken(products__1__id="support"))
    assert error.problems == (
        "products: product ids must be unique, repeated: 'support' (at 0, 1)",
    )


def test_every_plan_must_be_priced_in_the_same_currencies(tmp_path: Path) -> None:
    data = _broken(
        products__1__plans__0__prices__EUR={"monthly": "9.00", "annual": "86.40"},
    )
    error = _problems(tmp_path, data)
    assert len(error.problems) == 1
    assert error.problems[0].startswith("products: every plan must be priced in the same")
    assert "products.1.plans.0 (guide/professional) has EUR, USD" in error.problems[0]


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        (
            {"products__0__plans__0__prices__USD__monthly": "-1.00"},
            "products.0.plans.0.prices.USD.monthly: Input should be greater than or equal to 0",
        ),
        (
            {"products__0__plans__0__prices__USD__annual": "1.005"},
            "products.0.plans.0.prices.USD.annual: Decimal input should have no more than",
        ),
        ({"products__0__id": "Support"}, "products.0.id: String should match pattern"),
        ({"products__1__addable": "yes"}, "products.1.addable: Input should be a valid boolean"),
        ({"products__1__plans": []}, "products.1.plans: List should have at least 1 item"),
        ({"products": []}, "products: List should have at least 1 item"),
        ({"products__0__plans__0__prices": {}}, "products.0.plans.0.prices: Dictionary should"),
    ],
)
def test_schema_problems_name_the_field_path(
    tmp_path: Path, edits: dict[str, Any], expected: str
) -> None:
    error = _problems(tmp_path, _broken(**edits))
    assert len(error.problems) == 1
    assert error.problems[0].startswith(expected)


def test_every_problem_is_reported_on_its_own_line(tmp_path: Path) -> None:
    data = _broken(
        products__0__plans__0__prices__USD__monthly=_DELETE,
        products__1__name="",
        products__1__extra=1,
    )
    error = _problems(tmp_path, data)
    lines = str(error).splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"invalid catalog {tmp_path / 'catalog.json'}: ") for line in lines)
    assert [problem.split(":")[0] for problem in error.problems] == [
        "products.0.plans.0.prices.USD.monthly",
        "products.1.name",
        "products.1.extra",
    ]


def test_not_an_object_at_the_top(tmp_path: Path) -> None:
    error = _problems(tmp_path, [])
    assert error.problems == ("(top level): expected a JSON object",)


def test_a_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match=r"missing\.json: cannot read the file"):
        load_catalog(tmp_path / "missing.json")


def test_the_document_model_can_be_built_without_a_file() -> None:
    catalog = Catalog(CatalogDocument.model_validate(VALID))
    assert catalog.facts().plans == {"support": ("team",), "guide": ("professional",)}
