"""Pydantic models of every command body, reply and event of the wire contract.

Command models ignore unknown fields (publishers may add fields) and carry no
role or permission: those come from the member directory only (R3).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from policies.comments import reject_has_comment
from policies.facts import OUT_OF_SCOPE_CHANGES, Change
from workflow.contract import names as n

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Slug = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]
Locale = Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}([-_][A-Za-z]{2,4})?$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Role = Literal["owner", "billing_admin", "admin", "agent"]
AccountType = Literal["self_service", "sales_assisted"]
BillingCycle = Literal["monthly", "annual"]
State = Literal["pending", "approved", "rejected", "cancelled", "expired", "voided"]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


# --- change items -------------------------------------------------------------


class AddSeats(Body):
    type: Literal["add_seats"]
    product: Slug
    quantity: StrictInt


class AddProduct(Body):
    type: Literal["add_product"]
    product: Slug
    plan: Slug
    seats: StrictInt | None = None


class UpgradePlan(Body):
    type: Literal["upgrade_plan"]
    product: Slug
    plan: Slug


class OutOfScope(Body):
    """Recognised by its ``type`` alone so it can be refused with ``out_of_scope`` (R8)."""

    type: Literal[OUT_OF_SCOPE_CHANGES]  # type: ignore[valid-type]


ChangeItem = Annotated[
    AddSeats | AddProduct | UpgradePlan | OutOfScope, Field(discriminator="type")
]


def to_change(item: ChangeItem) -> Change:
    """The plain fact the policies evaluate."""
    return Change(
        type=item.type,
        product=getattr(item, "product", None),
        plan=getattr(item, "plan", None),
        quantity=getattr(item, "quantity", None),
        seats=getattr(item, "seats", None),
    )


def change_as_dict(change: Change) -> dict[str, Any]:
    """A change item as stored and returned: only the fields its type uses."""
    fields = ("type", "product", "plan", "quantity", "seats")
    return {f: getattr(change, f) for f in fields if getattr(change, f) is not None}


# --- commands -----------------------------------------------------------------


class ProductLineIn(Body):
    product: Slug
    plan: Slug
    seats: Annotated[StrictInt, Field(ge=0, le=1_000_000)]


class SubscriptionIn(Body):
    currency: Currency
    billing_cycle: BillingCycle
    products: Annotated[list[ProductLineIn], Field(max_length=50)]


BLAMED = "blamed_field"
"""The key of a validation error's context naming the field a cross-field check blames
(``approval.currency`` for a threshold in another currency than the subscription's)."""

MAX_THRESHOLD = Decimal("1e12")
"""No subscription costs this much per period: a larger threshold is a typing slip."""


class ApprovalIn(Body):
    """R23: requests whose total per billing period exceeds ``second_above`` need two
    deciders. ``currency`` may say which currency the amount is in; it must then be the
    subscription's (when the message carries one), and defaults to the account's."""

    second_above: str
    currency: Currency | None = None

    @field_validator("second_above", mode="before")
    @classmethod
    def _decimal_amount(cls, value: Any) -> str:
        """Money is a decimal string (``"1000.00"``): not a number, no currency sign, at
        most two decimals, never negative."""
        example = 'a decimal string such as "1000.00"'
        if not isinstance(value, str):
            raise PydanticCustomError(
                "threshold", f"must be {example}, not {{kind}}", {"kind": type(value).__name__}
            )
        text = value.strip()
        if any(not (c.isdigit() or c in ".+-") for c in text):
            raise PydanticCustomError(
                "threshold",
                f"must be {example}, a plain amount in the account's currency "
                "(name the currency in approval.currency)",
            )
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise PydanticCustomError("threshold", f"must be {example}") from None
        exponent = amount.as_tuple().exponent
        if not isinstance(exponent, int):  # NaN or infinity
            raise PydanticCustomError("threshold", f"must be {example}")
        if amount < 0 or text.startswith("-"):
            raise PydanticCustomError("threshold", "must not be negative")
        if exponent < -2:
            raise PydanticCustomError("threshold", "has more than two decimals")
        if amount >= MAX_THRESHOLD:
            raise PydanticCustomError("threshold", "is larger than any subscription costs")
        return f"{amount:.2f}"


class AccountUpsert(Body):
    account_id: Id
    name: Name
    type: AccountType
    allows_subscription_changes: StrictBool
    subscription: SubscriptionIn | None = None
    approval: ApprovalIn | None = None
    """R23; absent keeps the account's threshold, ``null`` removes it."""

    @field_validator("approval")
    @classmethod
    def _threshold_in_the_subscription_currency(
        cls, approval: ApprovalIn | None, info: ValidationInfo
    ) -> ApprovalIn | None:
        subscription = info.data.get("subscription")
        if approval is None or approval.currency is None or subscription is None:
            return approval
        if approval.currency != subscription.currency:
            raise PydanticCustomError(
                "threshold_currency",
                "the threshold is in {currency}, but the subscription is billed in {billed}: "
                "state it in {billed}",
                {
                    "currency": approval.currency,
                    "billed": subscription.currency,
                    BLAMED: "currency",
                },
            )
        return approval

    @property
    def approval_given(self) -> bool:
        """Whether the message says anything of ``approval`` (``null`` included)."""
        return "approval" in self.model_fields_set


class MemberUpsert(Body):
    account_id: Id
    user_id: Id
    name: Name
    email: Email
    role: Role
    locale: Locale = "en"


class MemberRemove(Body):
    account_id: Id
    user_id: Id


class RequestPreview(Body):
    account_id: Id
    actor_id: Id
    changes: Annotated[list[ChangeItem], Field(min_length=1, max_length=50)]


class RequestSubmit(RequestPreview):
    note: Text | None = None


class RequestDecide(Body):
    request_id: Id
    actor_id: Id
    decision: Literal["approve", "reject"]
    comment: Annotated[Text | None, Field(validate_default=True)] = None

    @field_validator("comment")
    @classmethod
    def _reject_needs_comment(cls, comment: str | None, info: ValidationInfo) -> str | None:
        decision = reject_has_comment(info.data.get("decision", ""), comment)
        if not decision.allowed:
            raise PydanticCustomError("R19", "{reason} (R19)", {"reason": decision.message})
        return comment


class RequestCancel(Body):
    request_id: Id
    actor_id: Id
    reason: Text | None = None


class CatalogGet(Body):
    """No fields: the body may be ``{}``."""


class RequestGet(Body):
    request_id: Id
    actor_id: Id


class RequestList(Body):
    account_id: Id
    actor_id: Id
    state: State | None = None


COMMANDS: dict[str, type[Body]] = {
    n.ACCOUNT_UPSERT: AccountUpsert,
    n.MEMBER_UPSERT: MemberUpsert,
    n.MEMBER_REMOVE: MemberRemove,
    n.REQUEST_PREVIEW: RequestPreview,
    n.REQUEST_SUBMIT: RequestSubmit,
    n.REQUEST_DECIDE: RequestDecide,
    n.REQUEST_CANCEL: RequestCancel,
    n.REQUEST_GET: RequestGet,
    n.REQUEST_LIST: RequestList,
    n.CATALOG_GET: CatalogGet,
}

# Commands with an effect that, without a message_id, are deduplicated by body hash.
BODY_DEDUPED = frozenset({n.REQUEST_SUBMIT, n.REQUEST_DECIDE, n.REQUEST_CANCEL})
# Commands with no effect at all: their replies are never stored.
QUERIES = frozenset({n.REQUEST_PREVIEW, n.REQUEST_GET, n.REQUEST_LIST, n.CATALOG_GET})


# --- replies and events -------------------------------------------------------


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] = []


class Reply(BaseModel):
    ok: bool
    result: dict[str, Any] | None = None
    error: ErrorBody | None = None


class HistoryEntry(BaseModel):
    from_: State | None = Field(alias="from")
    to: State
    trigger: str
    actor_id: str | None
    at: datetime
    reason: str | None = None
    channel: Literal["amqp", "web", "email_link"] | None = None
    """How the command came (contract: console); none for the sweeper's expiry."""


class ApprovalEntry(BaseModel):
    """One decider's approval of a request (R23), oldest first in ``approvals``."""

    actor_id: str
    at: datetime
    comment: str | None = None


class ApprovalView(BaseModel):
    """An account's two-person approval threshold (R23), as ``account.upsert`` replies it."""

    second_above: str
    currency: str | None


class SummaryLine(BaseModel):
    item: dict[str, Any]
    description: str
    current: dict[str, Any] | None
    proposed: dict[str, Any] | None
    cost: str


class Summary(BaseModel):
    currency: str
    billing_cycle: BillingCycle
    period: Literal["month", "year"]
    lines: list[SummaryLine]
    total: str


class RequestView(BaseModel):
    request_id: str
    account_id: str
    requester_id: str
    requester_name: str | None = None
    state: State
    changes: list[dict[str, Any]]
    note: str | None
    summary: Summary
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    comment: str | None
    history: list[HistoryEntry]
    approvals: list[ApprovalEntry] = []
    """Who approved it and when (R23): one entry per approval, the last one included."""


class SubscriptionView(BaseModel):
    currency: str | None
    billing_cycle: BillingCycle | None
    products: list[ProductLineIn]


class Recipient(BaseModel):
    user_id: str
    email: str
    name: str


class NotificationData(BaseModel):
    notification_id: str
    template: str
    locale: str
    recipient: Recipient
    subject: str
    text: str
    context: dict[str, Any] | None = None
    """Optional: the plain values the mail talks about (account, requester, changes,
    cost, times), for consumers that render their own message."""


class Event(BaseModel):
    event_id: str
    type: str
    occurred_at: datetime
    account_id: str
    request_id: str | None = None
    data: dict[str, Any]


ADAPTERS: dict[str, TypeAdapter[Any]] = {key: TypeAdapter(model) for key, model in COMMANDS.items()}
