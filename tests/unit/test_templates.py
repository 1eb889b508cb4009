"""Notification templates (R14, R16, R17, R20-R22): every one in every locale, locale choice
with its fallback to English, escaping in the HTML part, and the event's text matching the
mail's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jinja2 import UndefinedError

from workflow.domain.catalog import load_catalog
from workflow.notifications import texts as notifications
from workflow.notifications.texts import TEMPLATES, pick_locale, render, render_email

NOW = datetime(2026, 1, 8, 9, 0, tzinfo=UTC)
SUMMARY = {
    "currency": "USD",
    "billing_cycle": "monthly",
    "period": "month",
    "total": "1310.00",
    "lines": [
        {
            "item": {"type": "add_seats", "product": "support", "quantity": 5},
            "description": "Add 5 seats to Support (Professional)",
            "current": {"product": "support", "plan": "professional", "seats": 10},
            "proposed": {"product": "support", "plan": "professional", "seats": 15},
            "cost": "575.00",
        },
        {
            "item": {"type": "upgrade_plan", "product": "guide", "plan": "enterprise"},
            "description": "Upgrade Guide from Professional to Enterprise (15 seats)",
            "current": {"product": "guide", "plan": "professional", "seats": 15},
            "proposed": {"product": "guide", "plan": "enterprise", "seats": 15},
            "cost": "735.00",
        },
    ],
}
REQUEST = {
    "request_id": "r-1",
    "requester_id": "adam",
    "requester_name": "Adamo Rossi",
    "created_at": NOW - timedelta(days=3, hours=2),
    "summary": SUMMARY,
}
VALUES = {
    "account": "Acme Corp",
    "request_id": "r-1",
    "actor": "Olivia Owner",
    "note": "Five more agents start on Monday",
    "comment": "Budget <approved> & signed",
    "reason": "account acme is managed by the vendor",
    "expires_at": NOW + timedelta(days=27),
}
EXPECTED = {
    "request_submitted",
    "request_approved",
    "request_rejected",
    "request_expired",
    "request_voided",
    "request_withdrawn",
    "request_cancelled",
    "request_reminder",
    "request_expiry_warning",
    "request_escalated",
    "request_approval_recorded",
}


def recipient(locale: str = "en", user_id: str = "olivia") -> dict[str, Any]:
    return {"user_id": user_id, "name": "Olivia Owner", "email": "o@acme.example", "locale": locale}


def event(template: str, locale: str = "en", user_id: str = "olivia") -> dict[str, Any]:
    return render(
        template,
        recipient(locale, user_id),
        VALUES,
        SUMMARY,
        request=REQUEST,
        now=NOW,
        catalog=load_catalog(),
    )


def test_every_notification_exists_in_english_and_italian() -> None:
    assert set(TEMPLATES) == EXPECTED | {"sign_in"}
    for locales in TEMPLATES.values():
        assert locales >= {"en", "it"}


@pytest.mark.parametrize("template", sorted(EXPECTED))
@pytest.mark.parametrize("locale", ["en", "it"])
def test_every_template_renders_the_account_requester_changes_and_cost(
    template: str, locale: str
) -> None:
    data = event(template, locale)
    email = render_email(template, data["locale"], data["context"])
    assert email.subject == data["subject"]
    assert email.text == data["text"]  # the event's text is the mail's text part
    assert "\n" not in email.subject
    assert "Acme Corp" in email.subject + email.text
    assert "Olivia Owner" in email.text
    if template != "request_expired":
        assert "Adamo Rossi" in email.subject + email.text or template in (
            "request_approved",
            "request_rejected",
            "request_cancelled",
        )
    assert ("575.00 USD" if locale == "en" else "575,00 USD") in email.text
    assert "Support" in email.text
    assert "Enterprise" in email.text
    assert "{{" not in email.text
    assert "{%" not in email.html
    assert email.html.startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale}">' in email.html
    assert "Acme Corp" in email.html
    for line in email.text.splitlines():
        assert len(line) <= 76 or line.startswith("  - "), line


def test_the_submission_names_the_cost_per_period_and_the_note() -> None:
    text = event("request_submitted")["text"]
    assert "Add 5 seats to Support (Professional): +575.00 USD" in text
    assert "Additional cost: 1,310.00 USD per month." in text
    assert "Note from Adamo Rossi: Five more agents start on Monday" in text
    italian = event("request_submitted", "it")["text"]
    assert "5 licenze in più per Support (Professional): +575,00 USD" in italian
    assert "Passaggio di Guide da Professional a Enterprise (15 licenze)" in italian
    assert "Costo aggiuntivo: 1.310,00 USD al mese." in italian


def test_time_pending_and_expiry_appear_in_the_reminder() -> None:
    text = " ".join(event("request_reminder")["text"].split())
    assert "for 3 days (since 5 January 2026 at 07:00 UTC)" in text
    assert "it expires on 4 February 2026 at 09:00 UTC" in text
    italian = " ".join(event("request_reminder", "it")["text"].split())
    assert "da 3 giorni (dal 5 gennaio 2026 alle 07:00 UTC)" in italian


def test_the_expiry_warning_says_when_to_the_requester_and_the_deciders() -> None:
    """R21: told that it will expire, and when, in words for each side."""
    to_requester = event("request_expiry_warning", user_id="adam")
    to_owner = event("request_expiry_warning", user_id="olivia")
    when = "expires on 4 February 2026 at 09:00 UTC"
    assert to_requester["subject"] == f"Your subscription change for Acme Corp {when}"
    assert to_owner["subject"] == f"Adamo Rossi's change to Acme Corp {when} unless you decide"
    requester_text = " ".join(to_requester["text"].split())
    owner_text = " ".join(to_owner["text"].split())
    assert "Your request of 5 January 2026 at 07:00 UTC" in requester_text
    assert "cancel the request if you no longer need it" in requester_text
    assert "Five more agents" not in requester_text  # their own note is not quoted back
    assert "Note from Adamo Rossi: Five more agents start on Monday" in owner_text
    assert "approve or reject it before then" in owner_text
    italian = event("request_expiry_warning", "it", user_id="adam")
    assert italian["subject"] == (
        "La tua modifica dell'abbonamento di Acme Corp scade il 4 febbraio 2026 alle 09:00 UTC"
    )
    italian_owner = " ".join(event("request_expiry_warning", "it")["text"].split())
    assert "scade il 4 febbraio 2026 alle 09:00 UTC" in italian_owner


def test_the_escalation_says_how_long_nobody_decided() -> None:
    """R22: a decider who hears of the request for the first time learns its story."""
    text = " ".join(event("request_escalated")["text"].split())
    assert (
        "Adamo Rossi asked for these changes to the subscription of Acme Corp on 5 January" in text
    )
    assert "nobody has decided in 3 days, so the request now comes to you as well" in text
    assert "If nobody decides, it expires on 4 February 2026 at 09:00 UTC." in text
    italian = event("request_escalated", "it")
    assert italian["subject"].startswith("Ora anche a te: Adamo Rossi chiede")
    assert "nessuno ha deciso in 3 giorni" in " ".join(italian["text"].split())


def test_the_call_for_a_second_approval_names_the_first_approver_and_what_is_asked() -> None:
    """R23: the other deciders learn who approved, that a second approval is needed, and
    what the request changes and costs, in their language."""
    text = " ".join(event("request_approval_recorded", user_id="bella")["text"].split())
    subject = event("request_approval_recorded", user_id="bella")["subject"]
    assert subject == ("Olivia Owner approved a change to Acme Corp: a second approval is needed")
    assert "Olivia Owner approved Adamo Rossi's request" in text
    assert "needs the approval of a second decider before anything changes" in text
    assert "Comment from Olivia Owner: Budget <approved> & signed" in text
    assert "Additional cost: 1,310.00 USD per month." in text
    italian = " ".join(event("request_approval_recorded", "it", "bella")["text"].split())
    assert "serve l'approvazione di una seconda persona" in italian
    assert "Costo aggiuntivo: 1.310,00 USD al mese." in italian
    html = render_email(
        "request_approval_recorded", "en", event("request_approval_recorded")["context"]
    ).html
    assert "Budget &lt;approved&gt; &amp; signed" in html


def test_voided_reads_differently_for_the_requester_and_the_deciders() -> None:
    to_requester = event("request_voided", user_id="adam")
    to_owner = event("request_voided", user_id="olivia")
    assert to_requester["subject"].startswith("Your subscription change")
    assert "Adamo Rossi" in to_owner["subject"]
    assert "nothing left for you to decide" in " ".join(to_owner["text"].split())


@pytest.mark.parametrize(
    ("asked", "chosen"),
    [
        ("it", "it"),
        ("it-IT", "it"),
        ("IT_it", "it"),
        ("en-GB", "en"),
        ("fr", "en"),
        (None, "en"),
        ("", "en"),
    ],
)
def test_the_recipients_locale_with_english_as_fallback(asked: str | None, chosen: str) -> None:
    assert pick_locale(asked, "request_submitted") == chosen


def test_a_template_missing_in_a_locale_falls_back_to_english() -> None:
    data = event("request_submitted", "it")
    email = render_email("request_submitted", "de", data["context"])
    assert email.subject == event("request_submitted", "en")["subject"]


def test_html_escapes_what_people_typed() -> None:
    data = event("request_approved")
    html = render_email("request_approved", "en", data["context"]).html
    assert "Budget &lt;approved&gt; &amp; signed" in html
    assert "<approved>" not in html
    assert "Budget <approved> & signed" in data["text"]


def test_a_broken_template_never_fails_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path falls back to a plain text; the notifier records the error later."""
    context = event("request_submitted")["context"]
    del context["account"]
    with pytest.raises(Exception, match="account"):
        render_email("request_submitted", "en", context)
    monkeypatch.setitem(TEMPLATES, "request_unknown", frozenset({"en"}))
    data = render("request_unknown", recipient(), VALUES, SUMMARY, request=REQUEST, now=NOW)
    assert "r-1" in data["subject"]
    assert data["template"] == "request_unknown"


def test_templates_compile_once() -> None:
    notifications._template.cache_clear()
    for _ in range(3):
        event("request_submitted")
    info = notifications._template.cache_info()
    assert info.misses == 1
    assert info.hits >= 2


def test_no_template_imports_with_context() -> None:
    """An import with context runs the imported template again on every render; the macros
    take what they show as arguments instead, so one module serves every render."""
    folder = Path(notifications.__file__).parent / "templates"
    sources = [*folder.glob("*/*.txt"), *folder.glob("*/*.html")]
    assert sources
    for source in sources:
        assert "with context" not in source.read_text(encoding="utf-8"), source


def test_amounts_follow_the_language_of_the_template_in_both_parts() -> None:
    for locale, line, total in (
        ("en", "+575.00 USD", "+1,310.00 USD"),
        ("it", "+575,00 USD", "+1.310,00 USD"),
    ):
        data = event("request_submitted", locale)
        email = render_email("request_submitted", locale, data["context"])
        assert line in email.text
        assert line in email.html
        assert total in email.html


def test_a_context_without_its_currency_is_refused() -> None:
    context = event("request_submitted")["context"]
    del context["currency"]
    with pytest.raises(UndefinedError, match="currency"):
        render_email("request_submitted", "en", context)


def test_templates_read_dict_keys_and_still_see_dict_methods() -> None:
    env = notifications._ENV
    line = {"cost": "1.00", "items": "a key"}
    assert env.getattr(line, "cost") == "1.00"
    assert env.getattr(line, "items") == line.items  # as Jinja does: the attribute first
    with pytest.raises(UndefinedError, match="cost"):
        str(env.getattr({}, "cost"))


@pytest.mark.parametrize(
    "text",
    [
        " ".join(["word"] * 40),
        "x" * 76 + " after a word exactly as wide as a line",
        "x" * 75 + " y " + "z" * 80,
        "y" * 90 + " a first word wider than a line, then a sentence that needs wrapping too",
        "a sentence whose last word is wider than a line: " + "z" * 100,
        "z" * 100,
        "runs  of   spaces " * 8,
        "a trailing space after a sentence long enough that it has to be wrapped somewhere \nx",
    ],
)
def test_wrapping_matches_the_word_by_word_fill(text: str) -> None:
    """Breaking at the last space that fits gives what filling word by word gives."""
    width = notifications.WIDTH
    expected = [
        part
        for line in text.strip().split("\n")
        for part in ([line] if len(line) <= width else notifications._fill(line))
    ]
    wrapped = notifications._wrap(text)
    assert wrapped == "\n".join(expected)
    for part in wrapped.split("\n"):
        assert len(part) <= width or " " not in part.strip(), part
