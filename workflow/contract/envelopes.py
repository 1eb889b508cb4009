"""The envelopes of the wire contract: each command's reply, each event type, the properties.

``workflow.contract.messages`` validates what comes in (commands) and holds the shared shapes
(the request view, the summary); these models spell out, from those same shapes, what
goes out: the successful reply of every command, the error reply, every event type's
``data``, and the headers of a dead letter. The AsyncAPI document is generated from
them, and tests validate the service's real replies and events against them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from policies.decision import ErrorCode
from workflow.contract.messages import (
    ApprovalView,
    NotificationData,
    Recipient,
    RequestView,
    SubscriptionView,
    Summary,
)
from workflow.contract.names import (
    DELIVERY_COUNT_HEADER,
    DROPPED_HEADERS_HEADER,
    ERROR_HEADER,
    REPLAYS_HEADER,
    ROUTING_KEY_HEADER,
)


class Detail(BaseModel):
    """One problem of a refusal; a command with several problems gets one detail each."""

    code: ErrorCode
    reason: str
    rule: str | None = Field(None, description="Rule id, e.g. R1.")
    field: str | None = Field(
        None,
        description="Path of the field at fault in the body as sent, e.g. changes[0].quantity.",
    )
    request_id: str | None = Field(
        None, description="request_pending (R11): the pending request that blocks a submit."
    )


class Error(BaseModel):
    code: ErrorCode = Field(description="The first detail's code in order of precedence.")
    message: str = Field(description="Human readable.")
    details: list[Detail]


class ErrorReply(BaseModel):
    """A refusal (rule, lookup or invalid message): a normal answer, never a dead letter."""

    ok: Literal[False]
    error: Error


class RequestResult(BaseModel):
    request: RequestView


class RequestReply(BaseModel):
    """Reply to request.submit, request.decide, request.cancel and request.get."""

    ok: Literal[True]
    result: RequestResult


class RequestListResult(BaseModel):
    requests: list[RequestView] = Field(description="Newest first.")


class RequestListReply(BaseModel):
    ok: Literal[True]
    result: RequestListResult


class PreviewResult(BaseModel):
    summary: Summary


class PreviewReply(BaseModel):
    ok: Literal[True]
    result: PreviewResult


class AccountUpserted(BaseModel):
    account_id: str
    created: bool
    voided: list[str] = Field(
        description="Pending requests voided because the account stopped being eligible (R6)."
    )
    approval: ApprovalView | None = Field(
        None,
        description="The account's two-person approval threshold (R23) after the upsert: "
        "requests whose total per billing period exceeds it need two deciders; null when "
        "one is enough.",
    )


class AccountUpsertReply(BaseModel):
    ok: Literal[True]
    result: AccountUpserted


class MemberUpserted(BaseModel):
    account_id: str
    user_id: str
    created: bool


class MemberUpsertReply(BaseModel):
    ok: Literal[True]
    result: MemberUpserted


class MemberRemoved(BaseModel):
    account_id: str
    user_id: str
    removed: bool


class MemberRemoveReply(BaseModel):
    ok: Literal[True]
    result: MemberRemoved


class CyclePriceView(BaseModel):
    monthly: str = Field(description="Per seat per month, a decimal string (e.g. 25.00).")
    annual: str = Field(description="Per seat per year on annual billing, a decimal string.")


class PlanView(BaseModel):
    id: str
    name: str
    prices: dict[str, CyclePriceView] = Field(description="By currency code (e.g. USD).")


class ProductView(BaseModel):
    id: str
    name: str
    addable: bool = Field(description="Whether a request may add it as a new product (R7).")
    plans: list[PlanView] = Field(description="In rank order: an upgrade moves to a later plan.")


class CatalogView(BaseModel):
    products: list[ProductView] = Field(description="In the order people see them.")
    currencies: list[str] = Field(description="Every plan is priced in each of these.")
    billing_cycles: list[str]


class CatalogResult(BaseModel):
    catalog: CatalogView


class CatalogReply(BaseModel):
    ok: Literal[True]
    result: CatalogResult


REPLIES: dict[str, type[BaseModel]] = {
    "account.upsert": AccountUpsertReply,
    "member.upsert": MemberUpsertReply,
    "member.remove": MemberRemoveReply,
    "request.preview": PreviewReply,
    "request.submit": RequestReply,
    "request.decide": RequestReply,
    "request.cancel": RequestReply,
    "request.get": RequestReply,
    "request.list": RequestListReply,
    "catalog.get": CatalogReply,
}
"""The successful reply of each command; any command may get an ErrorReply instead."""


class EventEnvelope(BaseModel):
    """Fields every event has; consumers dedupe on ``event_id`` (redelivery happens)."""

    event_id: str
    occurred_at: datetime
    account_id: str
    request_id: str | None = None


RequestEventType = Literal[
    "request.submitted",
    "request.approved",
    "request.rejected",
    "request.cancelled",
    "request.expired",
    "request.voided",
]


class RequestEventData(BaseModel):
    request: RequestView


class RequestEvent(EventEnvelope):
    """A request's transition, with the request as replies show it."""

    type: RequestEventType
    data: RequestEventData


class ApprovalRecordedData(BaseModel):
    request: RequestView
    approver_id: str = Field(description="The decider whose approval was recorded.")


class ApprovalRecorded(EventEnvelope):
    """The first of two approvals (R23): the request stays pending, its ``approvals`` list
    names who approved; ``request.approved`` follows another decider's approval."""

    type: Literal["request.approval_recorded"]
    data: ApprovalRecordedData


class SubscriptionChange(BaseModel):
    old: SubscriptionView
    new: SubscriptionView
    request_id: str


class SubscriptionChanged(EventEnvelope):
    """An approval applied a change to the subscription (R12)."""

    type: Literal["subscription.changed"]
    data: SubscriptionChange


class NotificationRequested(EventEnvelope):
    """Someone must be told something (R16, R17), with the subject and text to send."""

    type: Literal["notification.requested"]
    data: NotificationData


class NotificationDelivery(BaseModel):
    notification_id: str
    recipient: Recipient
    template: str
    message_id: str = Field(description="The Message-ID of the email that was sent.")


class NotificationSent(EventEnvelope):
    """The built-in email notifier delivered a notification."""

    type: Literal["notification.sent"]
    data: NotificationDelivery


EVENTS: dict[str, type[EventEnvelope]] = {
    **dict.fromkeys(get_args(RequestEventType), RequestEvent),
    "request.approval_recorded": ApprovalRecorded,
    "subscription.changed": SubscriptionChanged,
    "notification.requested": NotificationRequested,
    "notification.sent": NotificationSent,
}


def _absent_not_null(schema: dict[str, Any]) -> None:
    """A header is absent, never null: no ``default: null`` beside a ``type``."""
    for field in schema.get("properties", {}).values():
        field.pop("default", None)


TRACEPARENT = Field(
    None,
    pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
    description="W3C Trace Context: version-trace id-parent span id-flags.",
)


class CommandHeaders(BaseModel):
    """Optional headers of a command: a W3C Trace Context, which the worker continues (a
    malformed one is ignored and a new trace starts; the command is never refused for it).
    Any other header is ignored."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_absent_not_null)

    traceparent: str | SkipJsonSchema[None] = TRACEPARENT
    tracestate: str | SkipJsonSchema[None] = Field(
        None, description="W3C Trace Context: vendor-specific trace state."
    )


class TracedHeaders(BaseModel):
    """Headers of a reply or an event: its trace (the command's), when the worker traces
    (OpenTelemetry configured by OTEL_* variables); absent otherwise."""

    model_config = ConfigDict(json_schema_extra=_absent_not_null)

    traceparent: str | SkipJsonSchema[None] = TRACEPARENT
    tracestate: str | SkipJsonSchema[None] = Field(
        None,
        description="W3C Trace Context: vendor-specific trace state, when the command had one.",
    )


class DeadLetterHeaders(BaseModel):
    """The headers table of a dead letter: the command's own headers, kept, and why it died.
    The command's AMQP properties (`message_id`, `correlation_id`, `reply_to`, ...) stay
    properties."""

    model_config = ConfigDict(extra="allow", json_schema_extra=_absent_not_null)

    x_subreq_error: str | SkipJsonSchema[None] = Field(
        None,
        alias=ERROR_HEADER,
        description="Why subreq could not process it (at most 1000 characters). Absent when "
        "the broker itself dead-lettered it (see x-death).",
    )
    x_subreq_routing_key: str | SkipJsonSchema[None] = Field(
        None,
        alias=ROUTING_KEY_HEADER,
        description="The routing key the command was published with (subreq's copy travels "
        "on the default exchange). Absent when the broker dead-lettered it, which keeps the "
        "command's own routing key.",
    )
    x_subreq_dropped_headers: bool | SkipJsonSchema[None] = Field(
        None,
        alias=DROPPED_HEADERS_HEADER,
        description="true when the command's own headers could not be encoded again and "
        "were left out of the copy.",
    )
    x_subreq_replays: int | SkipJsonSchema[None] = Field(
        None,
        alias=REPLAYS_HEADER,
        description="How often `subreq dlq replay` republished it before it died again.",
    )
    x_death: list[dict[str, Any]] | SkipJsonSchema[None] = Field(
        None,
        alias="x-death",
        description="Set by the broker when it dead-lettered the command itself (the "
        "command queue's delivery limit): reason, queue, count, time of each death.",
    )
    x_delivery_count: int | SkipJsonSchema[None] = Field(
        None,
        alias=DELIVERY_COUNT_HEADER,
        description="Set by the quorum command queue: how often it had been redelivered.",
    )
