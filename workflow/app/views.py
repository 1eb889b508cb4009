"""The request as replies and events show it (contract: "A request, wherever one is returned")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from workflow.domain.lifecycle import APPROVE
from workflow.persistence.store import Row, Store


def request_view(
    store: Store,
    row: Row,
    history: list[dict[str, Any]] | None = None,
    names: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    if history is None:
        history = store.histories([row["request_id"]])[row["request_id"]]
    if names is None:
        names = store.member_names(row["account_id"], [row["requester_id"]])
    return {
        "request_id": row["request_id"],
        "account_id": row["account_id"],
        "requester_id": row["requester_id"],
        "requester_name": names.get(row["requester_id"]),
        "state": row["state"],
        "changes": row["changes"],
        "note": row["note"],
        "summary": row["summary"],
        "created_at": row["created_at"],
        "decided_at": row["decided_at"],
        "decided_by": row["decided_by"],
        "comment": row["comment"],
        "history": history,
        "approvals": approvals(history),
    }


def approvals(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Who approved the request, oldest first (R23): every ``approve`` step of its history,
    the first of two (which stays pending) and the one that approved it."""
    return [
        {"actor_id": h["actor_id"], "at": h["at"], "comment": h["reason"]}
        for h in history
        if h["trigger"] == APPROVE
    ]


def request_views(store: Store, rows: list[Row]) -> list[dict[str, Any]]:
    """Views of many requests in three queries, whatever their number."""
    if not rows:
        return []
    histories = store.histories([r["request_id"] for r in rows])
    names: dict[str, str] = {}
    for account_id in {r["account_id"] for r in rows}:
        names.update(
            store.member_names(
                account_id, [r["requester_id"] for r in rows if r["account_id"] == account_id]
            )
        )
    return [request_view(store, r, histories[r["request_id"]], names) for r in rows]
