"""Notification intents (R14, R16, R17, R20-R22): who is told what, in their locale, as
outbox events.

Every ``notification.requested`` event carries a ``context`` (the plain values the
mail talks about) next to the rendered ``subject`` and ``text``, so any consumer gets
a ready message while the built-in notifier renders the same templates again, with
their HTML part, at delivery time.

The wording lives in Jinja templates under ``workflow/notifications/templates/<locale>/``: one
``.txt`` (subject and plain text) and one ``.html`` per notification. Building the
event runs on the hot path of every command that tells someone something, so the
environment is built once, templates compile on first use and stay cached, and a
template that fails there never fails the command: the event gets a plain fallback
text and the notifier, rendering the same template, records the error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib.resources import files
from typing import Any

from jinja2 import (
    Environment,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateError,
    pass_context,
    select_autoescape,
)
from jinja2.runtime import Context

from workflow.domain.catalog import Catalog
from workflow.domain.ids import new_id

log = logging.getLogger(__name__)

DEFAULT_LOCALE = "en"


def _available() -> dict[str, frozenset[str]]:
    """Template name -> the locales that have it, from the files that ship."""
    found: dict[str, set[str]] = {}
    for folder in files("workflow.notifications").joinpath("templates").iterdir():
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            name = entry.name
            if name.endswith(".txt") and not name.startswith("_"):
                found.setdefault(name.removesuffix(".txt"), set()).add(folder.name)
    return {name: frozenset(locales) for name, locales in found.items()}


TEMPLATES: dict[str, frozenset[str]] = _available()
"""Every notification there is, with the locales it is written in (R17: ``en`` at least)."""


@dataclass(frozen=True, slots=True)
class Email:
    """A rendered notification: the subject and both bodies of one email."""

    subject: str
    text: str
    html: str


# --- formatting the templates use (locale from the render context) ----------------------

_PERIODS = {
    "en": {"month": "per month", "year": "per year"},
    "it": {"month": "al mese", "year": "all'anno"},
}
_UNITS = {
    "en": (("day", "days"), ("hour", "hours"), ("minute", "minutes"), "less than a minute"),
    "it": (("giorno", "giorni"), ("ora", "ore"), ("minuto", "minuti"), "meno di un minuto"),
}
_MONTHS = {
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    "it": [
        "gennaio",
        "febbraio",
        "marzo",
        "aprile",
        "maggio",
        "giugno",
        "luglio",
        "agosto",
        "settembre",
        "ottobre",
        "novembre",
        "dicembre",
    ],
}
_AT = {"en": "at", "it": "alle"}
_SEPARATORS = {"en": str.maketrans(",.", ",."), "it": str.maketrans(",.", ".,")}
"""Thousands and decimal separators, from English (``1,104.00``) to each language."""


def _locale(ctx: Context) -> str:
    """The language of the template being rendered is the folder it lives in; macros are
    imported without the caller's context, so its ``locale`` value is not there to read."""
    locale = (ctx.name or "").partition("/")[0]
    return locale if locale in _PERIODS else DEFAULT_LOCALE


@pass_context
def _money(ctx: Context, amount: Any, currency: Any) -> str:
    """``1,104.00 USD`` in English, ``1.104,00 USD`` in Italian."""
    return render_money(amount, currency, _locale(ctx))


def render_money(amount: Any, currency: Any, locale: str) -> str:
    """``1,104.00 USD`` in English, ``1.104,00 USD`` in Italian."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return f"{amount} {currency}".strip()
    separators = _SEPARATORS.get(locale, _SEPARATORS[DEFAULT_LOCALE])
    grouped = f"{value:,.2f}".translate(separators)
    return f"{grouped} {currency}".strip()


@pass_context
def _per_period(ctx: Context, period: str) -> str:
    return _PERIODS[_locale(ctx)].get(period, period)


@pass_context
def _duration(ctx: Context, seconds: Any) -> str:
    """The largest whole unit, as a person says how long something waited: "3 days"."""
    return render_duration(seconds, _locale(ctx))


def render_duration(seconds: Any, locale: str) -> str:
    """The largest whole unit: "3 days" ("3 giorni")."""
    day, hour, minute, moment = _UNITS.get(locale, _UNITS[DEFAULT_LOCALE])
    total = int(seconds or 0)
    for size, (one, many) in ((86400, day), (3600, hour), (60, minute)):
        if total >= size:
            count = total // size
            return f"{count} {one if count == 1 else many}"
    return moment


@pass_context
def _date(ctx: Context, value: Any) -> str:
    """``5 January 2026 at 09:00 UTC``: unambiguous wherever the reader is."""
    return render_date(value, _locale(ctx))


def render_date(value: Any, locale: str) -> str:
    """``5 January 2026 at 09:00 UTC`` (``5 gennaio 2026 alle 09:00 UTC``)."""
    if not value:
        return ""
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    at = at.astimezone(UTC) if at.tzinfo else at.replace(tzinfo=UTC)
    locale = locale if locale in _MONTHS else DEFAULT_LOCALE
    month = _MONTHS[locale][at.month - 1]
    return f"{at.day} {month} {at.year} {_AT[locale]} {at.hour:02}:{at.minute:02} UTC"


def render_day(at: datetime, locale: str) -> str:
    """``5 January 2026`` (``5 gennaio 2026``), of a UTC time."""
    at = at.astimezone(UTC)
    months = _MONTHS.get(locale, _MONTHS[DEFAULT_LOCALE])
    return f"{at.day} {months[at.month - 1]} {at.year}"


_DICT_ATTRIBUTES = frozenset(dir(dict))


class _Environment(Environment):
    """Jinja's environment with two look-ups made cheap for the plain values these templates
    read; what they return is unchanged."""

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A dict rather than a ``ChainMap``: every context copies the globals and every
        import compares their keys, and a ``ChainMap`` does both in Python. The globals are
        complete before the first template loads, so a snapshot sees them all."""
        return {**self.globals, **(d or {})}

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``line.cost`` on a dict: the key straight away, instead of a failed attribute
        look-up first (an exception per access). A dict's own attributes still win."""
        if type(obj) is dict and attribute not in _DICT_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


def _environment() -> Environment:
    env = _Environment(
        loader=PackageLoader("workflow.notifications", "templates"),
        autoescape=select_autoescape(["html"], default_for_string=False, default=False),
        undefined=StrictUndefined,  # a missing value is a template bug, never a blank
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # the files ship with the package: no stat per render
        cache_size=-1,  # a fixed, small set: a plain dict, no LRU bookkeeping per look-up
    )
    env.filters.update(money=_money, per_period=_per_period, duration=_duration, date=_date)
    return env


_ENV = _environment()


@cache
def _template(name: str) -> Template:
    """Compiled once per process, then a dictionary look-up."""
    return _ENV.get_template(name)


# --- choosing and rendering ---------------------------------------------------------------


def pick_locale(locale: str | None, template: str) -> str:
    """The recipient's language when a template exists in it, else English (R17)."""
    language = (locale or DEFAULT_LOCALE).replace("_", "-").split("-")[0].lower()
    return language if language in TEMPLATES.get(template, ()) else DEFAULT_LOCALE


def render_email(
    template: str, locale: str, context: Mapping[str, Any], *, html: bool = True
) -> Email:
    """Subject, text and (unless ``html=False``) HTML of one notification.

    Raises ``jinja2.TemplateError`` (unknown template or locale, a value the template
    needs and the context lacks); the caller decides what a failure means.
    """
    if locale not in TEMPLATES.get(template, ()):
        locale = DEFAULT_LOCALE
    values = {**context, "locale": locale}
    plain = _template(f"{locale}/{template}.txt").make_module(values)
    subject = " ".join(str(getattr(plain, "subject", "")).split())
    body = _wrap(str(plain))
    page = _template(f"{locale}/{template}.html").render(values, subject=subject) if html else ""
    return Email(subject, body, page)


WIDTH = 76
"""Plain-text paragraphs are written on one line in the templates and wrapped here."""


def _wrap(text: str) -> str:
    """Wrap long paragraphs at spaces; indented lines (the list of changes) stay as they are.

    A plain greedy fill: ``textwrap`` costs several times more, on the hot path. With single
    spaces between words (what the templates write) each break is the last space that fits,
    found by ``rfind``; other lines go word by word."""
    out: list[str] = []
    for line in text.strip().split("\n"):
        if len(line) <= WIDTH or line.startswith(" "):
            out.append(line)
        elif "  " in line or line.endswith(" "):
            out.extend(_fill(line))
        else:
            while len(line) > WIDTH:
                cut = line.rfind(" ", 0, WIDTH + 1)
                if cut < 0:  # a first word longer than a line stands alone
                    cut = line.find(" ")
                    if cut < 0:
                        break
                out.append(line[:cut])
                line = line[cut + 1 :]
            out.append(line)
    return "\n".join(out)


def _fill(line: str) -> list[str]:
    """The greedy fill one word at a time, for lines with runs of spaces."""
    out: list[str] = []
    current = ""
    for word in line.split(" "):
        if current and len(current) + 1 + len(word) > WIDTH:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    out.append(current)
    return out


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def _lines(summary: Mapping[str, Any], catalog: Catalog | None) -> list[dict[str, Any]]:
    """Each summary line with the display names a translated sentence needs."""
    names = catalog.facts() if catalog is not None else None
    lines = []
    for line in summary.get("lines", []):
        current, proposed = line.get("current"), line["proposed"]
        product = proposed["product"]
        lines.append(
            {
                "kind": line.get("item", {}).get("type", "add_product" if current is None else ""),
                "description": line["description"],
                "product": names.display(product) if names else product,
                "plan": catalog.plan_name(product, proposed["plan"])
                if catalog
                else proposed["plan"],
                "from_plan": (
                    (catalog.plan_name(product, current["plan"]) if catalog else current["plan"])
                    if current
                    else None
                ),
                "seats": proposed["seats"],
                "added": proposed["seats"] - (current["seats"] if current else 0),
                "cost": line["cost"],
            }
        )
    return lines


def build_context(
    recipient: Mapping[Any, Any],
    values: Mapping[str, Any],
    summary: Mapping[str, Any],
    *,
    request: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    catalog: Catalog | None = None,
) -> dict[str, Any]:
    """The JSON-ready values every template may use; absent ones are ``None``, never missing."""
    request = request or {}
    created_at = request.get("created_at")
    waited = (now - created_at).total_seconds() if now and isinstance(created_at, datetime) else 0
    requester = values.get("requester") or request.get("requester_name")
    return {
        "recipient": recipient["name"],
        "to_requester": recipient["user_id"] == request.get("requester_id"),
        "account": values.get("account"),
        "request_id": values.get("request_id") or request.get("request_id"),
        "requester": requester or request.get("requester_id"),
        "actor": values.get("actor"),
        "note": values.get("note"),
        "comment": values.get("comment"),
        "reason": values.get("reason"),
        "lines": _lines(summary, catalog),
        "total": summary["total"],
        "currency": summary["currency"],
        "period": summary["period"],
        "created_at": _iso(created_at),
        "at": _iso(now),
        "pending_seconds": max(0, int(waited)),
        "expires_at": _iso(values.get("expires_at")),
    }


def render(
    template: str,
    recipient: Mapping[Any, Any],
    values: Mapping[str, Any],
    summary: Mapping[str, Any],
    *,
    request: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    catalog: Catalog | None = None,
) -> dict[str, Any]:
    """The ``data`` of a ``notification.requested`` event for one recipient."""
    locale = pick_locale(recipient.get("locale"), template)
    context = build_context(recipient, values, summary, request=request, now=now, catalog=catalog)
    try:
        email = render_email(template, locale, context, html=False)
        subject, text = email.subject, email.text
    except TemplateError:
        # A bug in a template must not refuse the command; the notifier renders the same
        # template and records the error against this notification.
        log.exception("notification template %s/%s failed", locale, template)
        subject = f"Subscription change request {context['request_id']} ({template})"
        text = f"{subject}\n\nAccount: {context['account']}"
    return {
        "notification_id": new_id(),
        "template": template,
        "locale": locale,
        "recipient": {
            "user_id": recipient["user_id"],
            "email": recipient["email"],
            "name": recipient["name"],
        },
        "subject": subject,
        "text": text,
        "context": context,
    }
