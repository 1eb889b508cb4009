"""What a handler works with: the store of its transaction, its clock, catalog and outbox."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workflow.app.views import request_view
from workflow.contract.names import EVENT_OF_STATE, NOTIFICATION_REQUESTED
from workflow.domain.catalog import Catalog
from workflow.domain.lifecycle import Request
from workflow.notifications.texts import render
from workflow.persistence.store import Row, Store


@dataclass
class CommandContext:
    """Everything a handler touches; committing is the caller's job (one command, one
    transaction, or one savepoint of a batch)."""

    store: Store
    now: datetime
    catalog: Catalog
    notify_billing_admins: bool = False

    def emit(
        self,
        type_: str,
        account_id: str,
        data: Mapping[str, Any],
        request_id: str | None = None,
    ) -> str:
        return self.store.add_event(type_, self.now, account_id, data, request_id)

    def notify(
        self,
        template: str,
        recipients: Iterable[Row],
        request: Mapping[str, Any],
        values: Mapping[str, Any],
    ) -> None:
        """One ``notification.requested`` event per recipient (R14, R16, R17, R20-R22)."""
        for recipient in recipients:
            data = render(
                template,
                recipient,
                values,
                request["summary"],
                request=request,
                now=self.now,
                catalog=self.catalog,
            )
            self.emit(NOTIFICATION_REQUESTED, request["account_id"], data, request["request_id"])

    def record(
        self,
        request: Request,
        changes: Mapping[str, Any] | None,
        *,
        event: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store a transition the machine made: new state (``changes=None`` when the row was
        just inserted in it), history, and its event: the one of the new state, unless
        ``event`` names another (a transition that stays, R23), with ``data`` beside the
        request."""
        if changes is not None:
            self.store.update_request(request.request_id, {"state": request.state, **changes})
        self.store.add_history(request.request_id, request.steps)
        row = self.store.request(request.request_id)
        assert row is not None
        view = request_view(self.store, row)
        self.emit(
            event or EVENT_OF_STATE[request.state],
            request.account_id,
            {"request": view, **(data or {})},
            request.request_id,
        )
        return view

    def deciders(self, account_id: str) -> list[Row]:
        roles = ("owner", "billing_admin") if self.notify_billing_admins else ("owner",)
        return self.store.members(account_id, roles)

    def members_by_id(self, account_id: str, user_ids: Iterable[str]) -> list[Row]:
        wanted = set(user_ids)
        return [m for m in self.store.members(account_id) if m["user_id"] in wanted]
