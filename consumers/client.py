"""A typed Python client for other systems: one method per command of the contract.

Each method publishes its command (confirmed by the broker), waits for the reply and
returns the reply's ``result`` parsed into the contract's pydantic models
(``workflow.contract.envelopes``); a refusal raises the ``Refusal`` subclass of its code
(``consumers.replies``). ``call``, ``publish`` and ``wait`` stay for raw reply dicts.
Inputs are typed dicts and ``Literal``s rather than models, so the contract's JSON is
written as it is and still type-checked.

Replies come through RabbitMQ's direct reply-to, so the client declares no queue of its
own; anything it does is plain AMQP and JSON, as any language's client would do it.
Importing this module changes nothing in pika (the worker applies its workarounds).

Retries: every command carries a ``message_id``, its idempotency key. A method makes a new
one unless given one; after a ``ReplyTimeout`` (whose ``message_id`` says which it was) the
command may still be processed, so retry with the same ``message_id``: one effect, and
the original reply again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal, NotRequired, TypedDict

import orjson

from consumers.amqp.errors import NoWorker, ReplyTimeout
from consumers.amqp.rpc import RpcConnection
from consumers.replies import (
    Forbidden,
    InvalidChange,
    InvalidMessage,
    InvalidState,
    NotEligible,
    NotFound,
    OutOfScope,
    Refusal,
    RequestPending,
    UnexpectedReply,
    UnknownAccount,
    UnknownMember,
    result_of,
)
from workflow.contract import names as n
from workflow.contract.envelopes import (
    AccountUpserted,
    CatalogResult,
    CatalogView,
    MemberRemoved,
    MemberUpserted,
    PreviewResult,
    RequestListResult,
    RequestResult,
)
from workflow.contract.messages import AccountType, BillingCycle, RequestView, Role, State, Summary

__all__ = [  # the results and refusals too, so integrators import from one module
    "KEEP",
    "AccountUpserted",
    "Approval",
    "CatalogView",
    "ChangeItem",
    "Forbidden",
    "InvalidChange",
    "InvalidMessage",
    "InvalidState",
    "MemberRemoved",
    "MemberUpserted",
    "NoWorker",
    "NotEligible",
    "NotFound",
    "OutOfScope",
    "Refusal",
    "ReplyTimeout",
    "RequestPending",
    "RequestView",
    "SubreqClient",
    "Subscription",
    "Summary",
    "UnexpectedReply",
    "UnknownAccount",
    "UnknownMember",
]

DecisionKind = Literal["approve", "reject"]


class AddSeats(TypedDict):
    type: Literal["add_seats"]
    product: str
    quantity: int


class AddProduct(TypedDict):
    type: Literal["add_product"]
    product: str
    plan: str
    seats: NotRequired[int]


class UpgradePlan(TypedDict):
    type: Literal["upgrade_plan"]
    product: str
    plan: str


ChangeItem = AddSeats | AddProduct | UpgradePlan
"""A change a request may ask for (R7), as the JSON object the contract names."""


class ProductLine(TypedDict):
    product: str
    plan: str
    seats: int


class Subscription(TypedDict):
    currency: str
    billing_cycle: BillingCycle
    products: list[ProductLine]


class Approval(TypedDict):
    """R23: above ``second_above`` (a decimal string, per billing period) a request needs
    two deciders; ``currency``, when given, must be the subscription's."""

    second_above: str
    currency: NotRequired[str]


KEEP: Any = object()
"""``upsert_account(approval=KEEP)``: the message says nothing of the threshold, which stays."""


def new_message_id() -> str:
    return str(uuid.uuid4())


class SubreqClient:
    """One connection; not thread-safe (use one client per thread).

    ``url`` is an AMQP URL, or the nodes of a cluster as several separated by commas: the
    client connects to the first that answers and, when its connection is lost, to the
    first that answers then, publishing the commands still awaiting replies again.
    ``timeout`` is the default wait for a reply, in seconds; each method takes its own
    ``timeout`` too, and a ``message_id`` to reuse when retrying."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._broker = RpcConnection(url, name="subreq-client")

    # --- raw replies ---------------------------------------------------------------

    def publish(
        self,
        routing_key: str,
        body: dict[str, Any],
        *,
        message_id: str | None = None,
        correlation_id: str | None = None,
        reply: bool = True,
    ) -> str:
        """Publish a command (confirmed by the broker); returns its correlation id (the
        ``message_id`` unless given). ``NoWorker`` when no worker declared the queue yet."""
        message_id = message_id or new_message_id()
        correlation_id = correlation_id or message_id
        self._broker.publish(
            routing_key, orjson.dumps(body), message_id, correlation_id, reply=reply
        )
        return correlation_id

    def wait(self, correlation_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The reply to ``correlation_id``; ``ReplyTimeout`` when none came in time."""
        return self._broker.wait(correlation_id, self.timeout if timeout is None else timeout)

    def call(
        self,
        routing_key: str,
        body: dict[str, Any],
        *,
        message_id: str | None = None,
        correlation_id: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Publish and wait: the reply, ``{"ok": true, "result": ...}`` or a refusal, as
        sent. ``ReplyTimeout.message_id`` is the key to retry with."""
        message_id = message_id or new_message_id()
        sent = self.publish(routing_key, body, message_id=message_id, correlation_id=correlation_id)
        try:
            return self.wait(sent, timeout)
        except ReplyTimeout as exc:
            raise ReplyTimeout(str(exc), message_id=message_id) from None

    # --- the contract's commands, typed -----------------------------------------------

    def upsert_account(
        self,
        account_id: str,
        name: str,
        type: AccountType,
        allows_subscription_changes: bool,
        subscription: Subscription | None = None,
        *,
        approval: Approval | None = KEEP,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> AccountUpserted:
        """``account.upsert``: creates or updates the account; a ``subscription`` replaces
        its current one; an ``approval`` sets the two-person threshold (R23), ``None``
        removes it, and without one it stays. ``voided`` lists the pending requests this
        made ineligible (R6)."""
        body: dict[str, Any] = {
            "account_id": account_id,
            "name": name,
            "type": type,
            "allows_subscription_changes": allows_subscription_changes,
        }
        if subscription is not None:
            body["subscription"] = subscription
        if approval is not KEEP:
            body["approval"] = approval
        reply = self.call(n.ACCOUNT_UPSERT, body, message_id=message_id, timeout=timeout)
        return result_of(n.ACCOUNT_UPSERT, reply, AccountUpserted)

    def upsert_member(
        self,
        account_id: str,
        user_id: str,
        name: str,
        email: str,
        role: Role,
        locale: str = "en",
        *,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> MemberUpserted:
        """``member.upsert``: the directory roles come from (R3)."""
        body = {
            "account_id": account_id,
            "user_id": user_id,
            "name": name,
            "email": email,
            "role": role,
            "locale": locale,
        }
        reply = self.call(n.MEMBER_UPSERT, body, message_id=message_id, timeout=timeout)
        return result_of(n.MEMBER_UPSERT, reply, MemberUpserted)

    def remove_member(
        self,
        account_id: str,
        user_id: str,
        *,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> MemberRemoved:
        """``member.remove``: their requests keep their name; they can act no more."""
        body = {"account_id": account_id, "user_id": user_id}
        reply = self.call(n.MEMBER_REMOVE, body, message_id=message_id, timeout=timeout)
        return result_of(n.MEMBER_REMOVE, reply, MemberRemoved)

    def get_catalog(self, *, timeout: float | None = None) -> CatalogView:
        """``catalog.get``: products, plans in rank order and per-seat prices, to build
        and price a change form."""
        reply = self.call(n.CATALOG_GET, {}, timeout=timeout)
        return result_of(n.CATALOG_GET, reply, CatalogResult).catalog

    def preview(
        self,
        account_id: str,
        actor_id: str,
        changes: Sequence[ChangeItem],
        *,
        timeout: float | None = None,
    ) -> Summary:
        """``request.preview``: what a submit would cost, or why it would be refused;
        nothing changes."""
        body = {"account_id": account_id, "actor_id": actor_id, "changes": list(changes)}
        reply = self.call(n.REQUEST_PREVIEW, body, timeout=timeout)
        return result_of(n.REQUEST_PREVIEW, reply, PreviewResult).summary

    def submit(
        self,
        account_id: str,
        actor_id: str,
        changes: Sequence[ChangeItem],
        note: str | None = None,
        *,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> RequestView:
        """``request.submit``: a new pending request; ``RequestPending`` names the one
        already pending (R11)."""
        body: dict[str, Any] = {
            "account_id": account_id,
            "actor_id": actor_id,
            "changes": list(changes),
        }
        if note is not None:
            body["note"] = note
        return self._request(n.REQUEST_SUBMIT, body, message_id, timeout)

    def decide(
        self,
        request_id: str,
        actor_id: str,
        decision: DecisionKind,
        comment: str | None = None,
        *,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> RequestView:
        """``request.decide``: an approval applies the change (R12); a rejection needs a
        ``comment`` (R19), else ``InvalidMessage``."""
        body: dict[str, Any] = {
            "request_id": request_id,
            "actor_id": actor_id,
            "decision": decision,
        }
        if comment is not None:
            body["comment"] = comment
        return self._request(n.REQUEST_DECIDE, body, message_id, timeout)

    def cancel(
        self,
        request_id: str,
        actor_id: str,
        reason: str | None = None,
        *,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> RequestView:
        """``request.cancel``: by the requester, the owner or a billing admin (R4)."""
        body: dict[str, Any] = {"request_id": request_id, "actor_id": actor_id}
        if reason is not None:
            body["reason"] = reason
        return self._request(n.REQUEST_CANCEL, body, message_id, timeout)

    def get_request(
        self, request_id: str, actor_id: str, *, timeout: float | None = None
    ) -> RequestView:
        """``request.get``: for members of the request's account only (R3)."""
        body = {"request_id": request_id, "actor_id": actor_id}
        return self._request(n.REQUEST_GET, body, None, timeout)

    def list_requests(
        self,
        account_id: str,
        actor_id: str,
        state: State | None = None,
        *,
        timeout: float | None = None,
    ) -> list[RequestView]:
        """``request.list``: the account's requests, newest first, optionally in one state."""
        body: dict[str, Any] = {"account_id": account_id, "actor_id": actor_id}
        if state is not None:
            body["state"] = state
        reply = self.call(n.REQUEST_LIST, body, timeout=timeout)
        return result_of(n.REQUEST_LIST, reply, RequestListResult).requests

    def _request(
        self, routing_key: str, body: dict[str, Any], message_id: str | None, timeout: float | None
    ) -> RequestView:
        reply = self.call(routing_key, body, message_id=message_id, timeout=timeout)
        return result_of(routing_key, reply, RequestResult).request

    # --- the connection --------------------------------------------------------------

    def close(self) -> None:
        self._broker.close()

    def __enter__(self) -> SubreqClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
