"""Reading a form: the body bounded by ``MAX_BODY``, only the fields a form takes (a forged
``actor_id``, ``account_id``, ``role`` or any other is refused, never used), and the change
form turned into the contract's change items."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from consumers.web.security import MAX_BODY
from workflow.errors import SubreqError

FORM_TYPE = "application/x-www-form-urlencoded"
NOTE_LIMIT = 2000
SEATS_LIMIT = 100_000


class FormRefused(SubreqError):
    """Raised when a body is not a form this console takes; ``key`` names the message."""

    def __init__(self, status: int, key: str, **values: str) -> None:
        super().__init__(key)
        self.status = status
        self.key = key
        self.values = values


async def read_form(
    request: Request, fields: Iterable[str], prefixes: Iterable[str] = ()
) -> dict[str, str]:
    """The fields of a url-encoded form, each at most once, none the form does not take."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != FORM_TYPE:
        raise FormRefused(415, "error.bad_form", problem=f"expected {FORM_TYPE}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise FormRefused(413, "error.413")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise FormRefused(400, "error.bad_form", problem="the body is not UTF-8") from None
    allowed, starts = set(fields), tuple(prefixes)
    found: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed and not (starts and name.startswith(starts)):
            raise FormRefused(400, "error.field", field=name[:64])
        if name in found:
            raise FormRefused(400, "error.bad_form", problem=f"{name[:64]} was sent twice")
        found[name] = value
    return found


@dataclass(frozen=True)
class ChangeForm:
    """What the admin chose, as the form shows it again and as change items."""

    values: Mapping[str, str]
    changes: list[dict[str, Any]]
    note: str | None


CHANGE_PREFIXES = ("seats.", "plan.", "add.", "addplan.", "addseats.")


def change_form(
    fields: Mapping[str, str], owned: Mapping[str, str], addable: Mapping[str, list[str]]
) -> ChangeForm:
    """Change items from the form: ``owned`` maps each product of the subscription to its
    plan, ``addable`` each product the account may add to its plans. A field naming another
    product, or a number that is not one, is refused as a forged or broken form; whether a
    change is allowed is the contract's rules' to say (R7-R9)."""
    changes: list[dict[str, Any]] = []
    for name in fields:
        prefix, _, product = name.partition(".")
        if not name.startswith(CHANGE_PREFIXES):
            continue
        known = owned if prefix in ("seats", "plan") else addable
        if product not in known:
            raise FormRefused(400, "error.field", field=name[:64])
    for product, plan in owned.items():
        seats = _count(fields.get(f"seats.{product}", ""), f"seats.{product}")
        if seats:
            changes.append({"type": "add_seats", "product": product, "quantity": seats})
        target = fields.get(f"plan.{product}", "").strip()
        if target and target != plan:
            changes.append({"type": "upgrade_plan", "product": product, "plan": target})
    for product, plans in addable.items():
        if fields.get(f"add.{product}") != "1":
            continue
        plan = fields.get(f"addplan.{product}", "").strip() or plans[0]
        item: dict[str, Any] = {"type": "add_product", "product": product, "plan": plan}
        seats = _count(fields.get(f"addseats.{product}", ""), f"addseats.{product}")
        if seats:
            item["seats"] = seats
        changes.append(item)
    note = fields.get("note", "").strip()
    if len(note) > NOTE_LIMIT:
        raise FormRefused(
            400, "error.bad_form", problem=f"the note is over {NOTE_LIMIT} characters"
        )
    return ChangeForm(fields, changes, note or None)


def _count(value: str, name: str) -> int:
    text = value.strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) > SEATS_LIMIT:
        raise FormRefused(400, "error.bad_form", problem=f"{name} must be a whole number of seats")
    return int(text)
