"""A small Python client for other systems: publish a command, wait for its reply.

Replies come through RabbitMQ's direct reply-to, so the client declares no
queue of its own; anything it does is plain AMQP and JSON, as any language's
client would do it.
"""

from __future__ import annotations

import uuid
from types import TracebackType
from typing import Any

import orjson

from consumers.amqp.errors import NoWorker, ReplyTimeout
from consumers.amqp.rpc import RpcConnection

__all__ = ["NoWorker", "ReplyTimeout", "SubreqClient"]


class SubreqClient:
    """One connection; not thread-safe (use one client per thread)."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._broker = RpcConnection(url, name="subreq-client")

    def publish(
        self,
        routing_key: str,
        body: dict[str, Any],
        *,
        message_id: str | None = None,
        correlation_id: str | None = None,
        reply: bool = True,
    ) -> str:
        """Publish a command (confirmed by the broker); returns its correlation id.

        Raises ``NoWorker`` when no worker has declared the command queue yet."""
        message_id = message_id or str(uuid.uuid4())
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
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Publish and wait for the reply: ``{"ok": true, "result": ...}`` or an error."""
        return self.wait(self.publish(routing_key, body, message_id=message_id), timeout)

    # --- the contract's commands ------------------------------------------------

    def upsert_account(
        self,
        account_id: str,
        name: str,
        type: str,
        allows_subscription_changes: bool,
        subscription: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "account_id": account_id,
            "name": name,
            "type": type,
            "allows_subscription_changes": allows_subscription_changes,
        }
        if subscription is not None:
            body["subscription"] = subscription
        return self.call("account.upsert", body)

    def upsert_member(
        self, account_id: str, user_id: str, name: str, email: str, role: str, locale: str = "en"
    ) -> dict[str, Any]:
        return self.call(
            "member.upsert",
            {
                "account_id": account_id,
                "user_id": user_id,
                "name": name,
                "email": email,
                "role": role,
                "locale": locale,
            },
        )

    def remove_member(self, account_id: str, user_id: str) -> dict[str, Any]:
        return self.call("member.remove", {"account_id": account_id, "user_id": user_id})

    def preview(
        self, account_id: str, actor_id: str, changes: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return self.call(
            "request.preview", {"account_id": account_id, "actor_id": actor_id, "changes": changes}
        )

    def submit(
        self, account_id: str, actor_id: str, changes: list[dict[str, Any]], note: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"account_id": account_id, "actor_id": actor_id, "changes": changes}
        if note is not None:
            body["note"] = note
        return self.call("request.submit", body)

    def decide(
        self, request_id: str, actor_id: str, decision: str, comment: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "request_id": request_id,
            "actor_id": actor_id,
            "decision": decision,
        }
        if comment is not None:
            body["comment"] = comment
        return self.call("request.decide", body)

    def cancel(self, request_id: str, actor_id: str, reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"request_id": request_id, "actor_id": actor_id}
        if reason is not None:
            body["reason"] = reason
        return self.call("request.cancel", body)

    def get(self, request_id: str, actor_id: str) -> dict[str, Any]:
        return self.call("request.get", {"request_id": request_id, "actor_id": actor_id})

    def list(self, account_id: str, actor_id: str, state: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"account_id": account_id, "actor_id": actor_id}
        if state is not None:
            body["state"] = state
        return self.call("request.list", body)

    def close(self) -> None:
        self._broker.close()

    def __enter__(self) -> SubreqClient:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
