"""Plain facts the rules are evaluated over, built by the workflow from its own state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

Role = Literal["owner", "billing_admin", "admin", "agent"]
AccountType = Literal["self_service", "sales_assisted"]
RequestState = Literal["pending", "approved", "rejected", "cancelled", "expired", "voided"]

GRANTABLE_CHANGES = ("add_seats", "add_product", "upgrade_plan")
OUT_OF_SCOPE_CHANGES = (
    "remove_seats",
    "remove_product",
    "downgrade_plan",
    "change_billing_cycle",
    "change_payment_method",
    "manage_invoice",
    "cancel_account",
)


@dataclass(frozen=True, slots=True)
class Actor:
    """A member as the directory knows them (R3: never as a message claims)."""

    user_id: str
    account_id: str
    role: Role


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    type: AccountType
    allows_subscription_changes: bool


@dataclass(frozen=True, slots=True)
class Threshold:
    """An account's ``approval.second_above`` (R23): an amount per billing period in the
    account's currency (``None`` when the account has none on record)."""

    second_above: Decimal
    currency: str | None = None


@dataclass(frozen=True, slots=True)
class ProductLine:
    product: str
    plan: str
    seats: int


@dataclass(frozen=True, slots=True)
class Subscription:
    """The account's current subscription; ``products`` is empty when none is on record."""

    currency: str | None
    billing_cycle: Literal["monthly", "annual"] | None
    products: tuple[ProductLine, ...] = ()

    def line(self, product: str) -> ProductLine | None:
        for line in self.products:
            if line.product == product:
                return line
        return None


@dataclass(frozen=True, slots=True)
class CatalogFacts:
    """What the rules need of the catalog: ordered plans per product, addable products."""

    plans: Mapping[str, tuple[str, ...]]
    addable: frozenset[str] = field(default_factory=frozenset)
    names: Mapping[str, str] = field(default_factory=dict)

    def display(self, product: str) -> str:
        return self.names.get(product, product)


@dataclass(frozen=True, slots=True)
class Change:
    """One requested change item; fields unused by its type stay ``None``."""

    type: str
    product: str | None = None
    plan: str | None = None
    quantity: int | None = None
    seats: int | None = None
