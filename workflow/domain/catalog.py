"""The product catalog: products, their plans in order (lowest first) and per-seat prices.

The built-in catalog ships as package data (``workflow/domain/data/catalog.json``); an operator
may replace it with a file of their own (the settings pass its path). A broken file must
stop the service at start with a message saying exactly what to fix, so it is validated
in full here instead of failing later, at pricing time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from policies.facts import CatalogFacts
from workflow.errors import ConfigurationError, SubreqError

BillingCycle = Literal["monthly", "annual"]
BILLING_CYCLES: tuple[BillingCycle, ...] = get_args(BillingCycle)

CENT = Decimal("0.01")
BUILT_IN = "workflow/domain/data/catalog.json"


class CatalogError(ConfigurationError, ValueError):
    """Raised when a catalog file cannot be read or is not a valid catalog.

    ``problems`` holds one self-contained line per problem (a JSON position or a
    dotted field path, then what is wrong), so an operator can fix them all at once.
    """

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__("\n".join(f"invalid catalog {source}: {p}" for p in self.problems))


def _to_cents(value: Decimal) -> Decimal:
    return value.quantize(CENT)


Id = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
# Kept to the cent, so "115" and "115.00" in a file compare and render the same.
Money = Annotated[Decimal, Field(ge=0, decimal_places=2), AfterValidator(_to_cents)]


class _Strict(BaseModel):
    """A typo in an operator's file must be reported, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CyclePrices(_Strict):
    """Per-seat price for one currency: per month, and per year for annual billing."""

    monthly: Money
    annual: Money


class Plan(_Strict):
    id: Id
    name: Name
    prices: dict[Currency, CyclePrices] = Field(min_length=1)


class Product(_Strict):
    id: Id
    name: Name
    addable: StrictBool = False
    """Whether an online-assisted account may request it as a new product (R7)."""
    plans: list[Plan] = Field(min_length=1)
    """Ordered lowest first: an upgrade must move to a later plan (R7, R9)."""

    @field_validator("plans")
    @classmethod
    def _unique_plan_ids(cls, plans: list[Plan]) -> list[Plan]:
        _refuse_duplicates("plan", (plan.id for plan in plans))
        return plans


class CatalogDocument(_Strict):
    """The catalog file as written."""

    products: list[Product] = Field(min_length=1)

    @field_validator("products")
    @classmethod
    def _consistent(cls, products: list[Product]) -> list[Product]:
        _refuse_duplicates("product", (product.id for product in products))
        # A subscription in any currency the catalog knows must be priceable for every
        # product a request may name, so every plan is priced in the same currencies.
        expected = frozenset(products[0].plans[0].prices)
        odd = [
            f"products.{i}.plans.{j} ({product.id}/{plan.id}) has {_listed(plan.prices)}"
            for i, product in enumerate(products)
            for j, plan in enumerate(product.plans)
            if frozenset(plan.prices) != expected
        ]
        if odd:
            raise PydanticCustomError(
                "catalog_currencies",
                "every plan must be priced in the same currencies as products.0.plans.0 "
                "({expected}), but {odd}",
                {"expected": _listed(expected), "odd": "; ".join(odd)},
            )
        return products


def _refuse_duplicates(kind: str, ids: Iterable[str]) -> None:
    positions: dict[str, list[int]] = {}
    for index, item_id in enumerate(ids):
        positions.setdefault(item_id, []).append(index)
    repeated = [
        f"{item_id!r} (at {', '.join(map(str, where))})"
        for item_id, where in positions.items()
        if len(where) > 1
    ]
    if repeated:
        raise PydanticCustomError(
            f"duplicate_{kind}_id",
            "{kind} ids must be unique, repeated: {repeated}",
            {"kind": kind, "repeated": ", ".join(repeated)},
        )


def _listed(currencies: Iterable[str]) -> str:
    return ", ".join(sorted(currencies))


class Catalog:
    """The loaded catalog, read-only, with the look-ups validation and pricing need."""

    def __init__(self, document: CatalogDocument) -> None:
        self._products = tuple(document.products)
        self._by_id = MappingProxyType({product.id: product for product in document.products})
        self._plans = MappingProxyType(
            {(product.id, plan.id): plan for product in document.products for plan in product.plans}
        )
        self._currencies = frozenset(document.products[0].plans[0].prices)
        # Built once: the policies read it on every command.
        self._facts = CatalogFacts(
            plans=MappingProxyType(
                {p.id: tuple(plan.id for plan in p.plans) for p in document.products}
            ),
            addable=frozenset(p.id for p in document.products if p.addable),
            names=MappingProxyType({p.id: p.name for p in document.products}),
        )

    @property
    def products(self) -> tuple[Product, ...]:
        """In the file's order, which is the order people see them in."""
        return self._products

    @property
    def currencies(self) -> frozenset[str]:
        """Every plan is priced in each of these (checked at load)."""
        return self._currencies

    def view(self) -> dict[str, Any]:
        """The catalog as ``catalog.get`` answers it: prices as decimal strings."""
        return {
            "products": [
                {
                    "id": product.id,
                    "name": product.name,
                    "addable": product.addable,
                    "plans": [
                        {
                            "id": plan.id,
                            "name": plan.name,
                            "prices": {
                                currency: {"monthly": str(p.monthly), "annual": str(p.annual)}
                                for currency, p in sorted(plan.prices.items())
                            },
                        }
                        for plan in product.plans
                    ],
                }
                for product in self._products
            ],
            "currencies": sorted(self._currencies),
            "billing_cycles": list(BILLING_CYCLES),
        }

    def facts(self) -> CatalogFacts:
        """What the policies need, with no pydantic in sight (they import no I/O libraries)."""
        return self._facts

    def product(self, product_id: str) -> Product | None:
        return self._by_id.get(product_id)

    def plan_name(self, product_id: str, plan_id: str) -> str:
        """The display name, or the id itself for a plan the catalog does not know."""
        plan = self._plans.get((product_id, plan_id))
        return plan.name if plan is not None else plan_id

    def price(
        self, product_id: str, plan_id: str, currency: str, cycle: BillingCycle
    ) -> Decimal | None:
        """Per seat and per billing period; ``None`` when the catalog has no such price."""
        plan = self._plans.get((product_id, plan_id))
        if plan is None or currency not in plan.prices:
            return None
        prices = plan.prices[currency]
        return prices.monthly if cycle == "monthly" else prices.annual


def load_catalog(path: str | os.PathLike[str] | None = None) -> Catalog:
    """Read and validate a catalog file; ``None`` reads the built-in one.

    Raises ``CatalogError`` naming the file and every problem found.
    """
    if path is None:
        source = f"built-in {BUILT_IN}"
        resource = resources.files("workflow.domain").joinpath("data").joinpath("catalog.json")
        text = _read(source, resource.read_text)
    else:
        source = os.fspath(path)
        text = _read(source, Path(path).read_text)
    raw = _parse_json(source, text)
    try:
        document = CatalogDocument.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(
            source, [_describe(error) for error in exc.errors(include_url=False)]
        ) from None
    return Catalog(document)


def _read(source: str, read_text: Callable[..., str]) -> str:
    try:
        text = read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise CatalogError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise CatalogError(source, [f"not UTF-8 text: {exc.reason} at byte {exc.start}"]) from None
    return text


class _DuplicateKeyError(SubreqError):
    """Raised while parsing when one JSON object repeats a key (the later value would win)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _parse_json(source: str, text: str) -> Any:
    try:
        # Numbers become Decimal so a price written as a JSON number keeps its exact value.
        return json.loads(
            text,
            parse_float=Decimal,
            parse_constant=Decimal,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        problem = f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
    except _DuplicateKeyError as exc:
        problem = f"key {exc.args[0]!r} appears twice in one JSON object"
    except RecursionError:
        problem = "JSON nested too deeply"
    raise CatalogError(source, [problem]) from None


_PLAIN_MESSAGES: Mapping[str, str] = {
    "missing": "required field is missing",
    "extra_forbidden": "unknown field",
    "model_type": "expected a JSON object",
    "model_attributes_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
}


def _describe(error: ErrorDetails) -> str:
    """One line: the dotted path of the field, then what is wrong with it."""
    path = ".".join(str(part) for part in error["loc"]) or "(top level)"
    message = _PLAIN_MESSAGES.get(error["type"], error["msg"])
    value = error.get("input")
    if error["type"] not in ("missing", "extra_forbidden") and _is_scalar(value):
        shown = str(value) if isinstance(value, Decimal) else json.dumps(value)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        message = f"{message} (got {shown})"
    return f"{path}: {message}"


def _is_scalar(value: object) -> bool:
    return value is None or isinstance(value, str | int | float | bool | Decimal)
