"""Notification intents (R16, R17): who is told what, in their locale, as outbox events.

The text is rendered here so every consumer of ``notification.requested``
gets a ready message; the email notifier only has to deliver it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_LOCALE = "en"


@dataclass(frozen=True)
class Template:
    subject: str
    text: str


_EN_SIGNATURE = "\n\n-- \nsubreq, subscription change requests"
_IT_SIGNATURE = "\n\n-- \nsubreq, richieste di modifica dell'abbonamento"

TEMPLATES: dict[str, dict[str, Template]] = {
    "request_submitted": {
        "en": Template(
            "{requester} asks to change the subscription of {account}",
            "Hello {recipient},\n\n{requester} asked for these changes to the subscription of "
            "{account}:\n{changes}\n\nAdditional cost: {total} {currency} per {period}.{note}\n\n"
            "As the account owner or a billing admin you can approve or reject request "
            "{request_id}.",
        ),
        "it": Template(
            "{requester} chiede di modificare l'abbonamento di {account}",
            "Ciao {recipient},\n\n{requester} ha chiesto queste modifiche all'abbonamento di "
            "{account}:\n{changes}\n\nCosto aggiuntivo: {total} {currency} per {period}.{note}\n\n"
            "Come titolare dell'account o amministratore della fatturazione puoi approvare o "
            "rifiutare la richiesta {request_id}.",
        ),
    },
    "request_approved": {
        "en": Template(
            "Your subscription change for {account} was approved",
            "Hello {recipient},\n\n{actor} approved your request {request_id}. These changes "
            "are now part of the subscription of {account}:\n{changes}{comment}",
        ),
        "it": Template(
            "La modifica dell'abbonamento di {account} è stata approvata",
            "Ciao {recipient},\n\n{actor} ha approvato la tua richiesta {request_id}. Queste "
            "modifiche fanno ora parte dell'abbonamento di {account}:\n{changes}{comment}",
        ),
    },
    "request_rejected": {
        "en": Template(
            "Your subscription change for {account} was rejected",
            "Hello {recipient},\n\n{actor} rejected your request {request_id}:\n{changes}{comment}",
        ),
        "it": Template(
            "La modifica dell'abbonamento di {account} è stata rifiutata",
            "Ciao {recipient},\n\n{actor} ha rifiutato la tua richiesta {request_id}:\n"
            "{changes}{comment}",
        ),
    },
    "request_expired": {
        "en": Template(
            "Your subscription change for {account} expired",
            "Hello {recipient},\n\nNobody decided your request {request_id} in time, so it "
            "expired:\n{changes}\n\nYou can submit it again.",
        ),
        "it": Template(
            "La modifica dell'abbonamento di {account} è scaduta",
            "Ciao {recipient},\n\nNessuno ha deciso in tempo la tua richiesta {request_id}, "
            "quindi è scaduta:\n{changes}\n\nPuoi inviarla di nuovo.",
        ),
    },
    "request_voided": {
        "en": Template(
            "Your subscription change for {account} no longer applies",
            "Hello {recipient},\n\nRequest {request_id} was voided: {reason}.\n{changes}",
        ),
        "it": Template(
            "La modifica dell'abbonamento di {account} non è più valida",
            "Ciao {recipient},\n\nLa richiesta {request_id} è stata annullata: {reason}.\n"
            "{changes}",
        ),
    },
    "request_withdrawn": {
        "en": Template(
            "{requester} withdrew a subscription change for {account}",
            "Hello {recipient},\n\n{requester} withdrew request {request_id}; there is nothing "
            "left to decide.\n{changes}{comment}",
        ),
        "it": Template(
            "{requester} ha ritirato una modifica dell'abbonamento di {account}",
            "Ciao {recipient},\n\n{requester} ha ritirato la richiesta {request_id}; non c'è "
            "più nulla da decidere.\n{changes}{comment}",
        ),
    },
    "request_cancelled": {
        "en": Template(
            "Your subscription change for {account} was cancelled",
            "Hello {recipient},\n\n{actor} cancelled your request {request_id}:\n{changes}"
            "{comment}",
        ),
        "it": Template(
            "La modifica dell'abbonamento di {account} è stata cancellata",
            "Ciao {recipient},\n\n{actor} ha cancellato la tua richiesta {request_id}:\n"
            "{changes}{comment}",
        ),
    },
}

_LABELS = {
    "en": {"period": {"month": "month", "year": "year"}, "note": "Note", "comment": "Comment"},
    "it": {"period": {"month": "mese", "year": "anno"}, "note": "Nota", "comment": "Commento"},
}


def pick_locale(locale: str | None, template: str) -> str:
    """The recipient's language when a template exists in it, else English (R17)."""
    language = (locale or DEFAULT_LOCALE).replace("_", "-").split("-")[0].lower()
    return language if language in TEMPLATES[template] else DEFAULT_LOCALE


def render(
    template: str,
    recipient: Mapping[Any, Any],
    values: Mapping[str, Any],
    summary: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``data`` of a ``notification.requested`` event for one recipient."""
    locale = pick_locale(recipient.get("locale"), template)
    labels = _LABELS[locale]
    note = values.get("note")
    comment = values.get("comment")
    fields = {
        "recipient": recipient["name"],
        "changes": "\n".join(f"  - {line['description']}" for line in summary["lines"]),
        "total": summary["total"],
        "currency": summary["currency"],
        "period": labels["period"][summary["period"]],  # type: ignore[index]
        "note": f"\n{labels['note']}: {note}" if note else "",
        "comment": f"\n\n{labels['comment']}: {comment}" if comment else "",
        **{k: v for k, v in values.items() if k not in ("note", "comment")},
    }
    chosen = TEMPLATES[template][locale]
    signature = _IT_SIGNATURE if locale == "it" else _EN_SIGNATURE
    return {
        "notification_id": str(uuid.uuid4()),
        "template": template,
        "locale": locale,
        "recipient": {
            "user_id": recipient["user_id"],
            "email": recipient["email"],
            "name": recipient["name"],
        },
        "subject": chosen.subject.format(**fields),
        "text": chosen.text.format(**fields) + signature,
    }
