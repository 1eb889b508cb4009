"""Plain-text rendering for the command line: tables, request blocks, durations, money.

Output is plain aligned text, never wrapped to the terminal width, so that it can be
grepped, piped and compared in tests; times are UTC to the minute, in ISO 8601.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

SHORT = 60
"""Width past which the list's "changes" column is cut: a list is for finding, show for reading."""


def to_json(value: Any) -> str:
    """Datetimes as ISO 8601 UTC with ``Z``, as in the contract's messages."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z).decode()


def when(at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def duration(delta: timedelta) -> str:
    """The two largest units, which is all a person waiting needs: "3d 4h", "4h 12m", "12m"."""
    minutes = max(0, int(delta.total_seconds()) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else "<1m"


def money(summary: Mapping[str, Any], amount: str | None = None, *, per: str = "/") -> str:
    """``575.00 USD/month``; ``per=" per "`` reads better in a sentence."""
    value = summary.get("total") if amount is None else amount
    return f"{value} {summary.get('currency', '')}{per}{summary.get('period', '?')}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "") -> str:
    """Left-aligned columns two spaces apart; an empty cell shows as ``-``."""
    cells = [[str(h) for h in headers]]
    cells += [["-" if v is None or v == "" else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(indent + line.rstrip() for line in lines)


def status(view: Mapping[str, Any], now: datetime) -> str:
    """ "pending for 3d 4h" or "approved 2026-01-05 by u2": what happened, and when."""
    if view["state"] == "pending":
        return f"pending for {duration(now - view['created_at'])}"
    decided = view["decided_at"]
    text = view["state"] if decided is None else f"{view['state']} {when(decided)[:10]}"
    return f"{text} by {view['decided_by']}" if view["decided_by"] else text


def _short(text: str) -> str:
    return text if len(text) <= SHORT else text[: SHORT - 3] + "..."


def requests_table(views: Sequence[Mapping[str, Any]], now: datetime) -> str:
    rows = [
        (
            v["request_id"],
            v["state"],
            v["requester_name"] or v["requester_id"],
            _short("; ".join(line["description"] for line in v["summary"].get("lines", []))),
            money(v["summary"]),
            status(v, now),
        )
        for v in views
    ]
    return table(("REQUEST", "STATE", "REQUESTER", "CHANGES", "COST", "STATUS"), rows)


def product_line(line: Mapping[str, Any] | None) -> str:
    if line is None:
        return "(none)"
    return f"{line['product']}/{line['plan']} x{line['seats']}"


def request_block(
    view: Mapping[str, Any],
    notifications: Sequence[Mapping[str, Any]],
    now: datetime,
    ttl: timedelta,
) -> str:
    """Everything about one request, in the order a person asks about it."""
    summary = view["summary"]

    def field(label: str, value: str) -> str:
        return f"{label:<11}{value}"

    requester = view["requester_name"] or "(no longer a member)"
    out = [
        field("Request", view["request_id"]),
        field("State", view["state"]),
        field("Account", view["account_id"]),
        field("Requester", f"{requester} ({view['requester_id']})"),
        field("Note", view["note"] or "-"),
        "Changes",
    ]
    for number, line in enumerate(summary.get("lines", []), start=1):
        out.append(f"  {number}. {line['description']}")
        change = f"{product_line(line['current'])} -> {product_line(line['proposed'])}"
        out.append(f"     {change}, {money(summary, line['cost'])}")
    out += [field("Total", money(summary, per=" per ")), field("Created", when(view["created_at"]))]
    if view["state"] == "pending":
        waited = duration(now - view["created_at"])
        out.append(field("Pending", f"for {waited}, expires {when(view['created_at'] + ttl)}"))
    else:
        by = f" by {view['decided_by']}" if view["decided_by"] else ""
        out.append(field("Decided", f"{view['state']} {when(view['decided_at'])}{by}"))
        out.append(field("Comment", view["comment"] or "-"))
    approvals = view.get("approvals") or []
    out.append(field("Approvals", str(len(approvals)) if approvals else "none"))
    for approval in approvals:  # R23: who approved, the first of two included
        comment = f": {approval['comment']}" if approval["comment"] else ""
        out.append(f"  {when(approval['at'])} {approval['actor_id']}{comment}")
    out += ["", "History", history_table(view["history"]), "", "Notifications"]
    out.append(notifications_table(notifications) if notifications else "  (none)")
    return "\n".join(out)


def history_table(history: Sequence[Mapping[str, Any]]) -> str:
    """One line per step; a TRACE column when any step was made in a trace."""
    traced = any(s.get("trace_id") for s in history)
    rows = [
        (
            when(s["at"]),
            f"{s['from'] or '(new)'} -> {s['to']}",
            s["trigger"],
            s["actor_id"],
            s["reason"],
            *((s.get("trace_id"),) if traced else ()),
        )
        for s in history
    ]
    headers = ("AT", "TRANSITION", "TRIGGER", "ACTOR", "REASON", *(("TRACE",) if traced else ()))
    return table(headers, rows, indent="  ")


def delivery_status(delivery: Mapping[str, Any] | None, published_at: datetime | None) -> str:
    """What became of one notification: waiting for the relay or a notifier, sent, being
    retried (with why), or failed (with why)."""
    if delivery is None:
        return "published, not delivered yet" if published_at else "waiting for the relay"
    status = delivery["status"]
    if status == "sent":
        return f"sent {when(delivery['sent_at'])}"
    if status == "sending":
        return f"sending (attempt {delivery['attempts']})"
    reason = delivery["last_error"] or "no reason recorded"
    if status == "retrying":
        return f"retrying after attempt {delivery['attempts']}: {reason}"
    return f"failed: {reason}"


def notifications_table(notifications: Sequence[Mapping[str, Any]]) -> str:
    """Who was told what (the subject), in which language, and whether the mail went out."""
    rows = [
        (
            f"{n['recipient']['name']} <{n['recipient']['email']}>",
            n["template"],
            n["locale"],
            n["subject"],
            delivery_status(n.get("delivery"), n["published_at"]),
        )
        for n in notifications
    ]
    return table(("RECIPIENT", "TEMPLATE", "LOCALE", "SUBJECT", "EMAIL"), rows, indent="  ")


def deliveries_table(found: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            when(d["updated_at"]),
            d["status"],
            d["attempts"],
            _recipient(d["recipient"]),
            d["template"],
            d["request_id"],
            _short(d["last_error"] or "") if d["status"] != "sent" else "",
        )
        for d in found
    ]
    headers = ("AT", "STATUS", "ATTEMPTS", "RECIPIENT", "TEMPLATE", "REQUEST", "REASON")
    return table(headers, rows)


def _recipient(recipient: Mapping[str, Any]) -> str:
    """Name and address; the address alone once the event that named them is pruned."""
    name, email = recipient["name"], recipient["email"]
    return f"{name} <{email}>" if name else str(email)


def audit_table(entries: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        (
            when(e["at"]),
            e["command"],
            e["actor_id"],
            e["account_id"],
            e["request_id"],
            e["code"],
            e["message"],
        )
        for e in entries
    ]
    return table(("AT", "COMMAND", "ACTOR", "ACCOUNT", "REQUEST", "CODE", "MESSAGE"), rows)
