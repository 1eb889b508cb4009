"""The console's pure parts: tokens, links written into emails, signed sessions and forms,
the change form's parsing, the settings it needs, and its words in both languages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from consumers.web import texts
from consumers.web.forms import FormRefused, change_form
from consumers.web.security import SECURITY_HEADERS, Session, Signer, message_id
from workflow.console.tokens import TOKEN_BYTES, new_token, token_hash, well_formed
from workflow.errors import ConfigurationError
from workflow.notifications.links import HTML_MARK, Link, with_link
from workflow.notifications.texts import Email
from workflow.persistence import deliveries as record_states
from workflow.settings import load_settings

SECRET = "s" * 32


def test_tokens_carry_256_random_bits_and_only_their_hash_is_kept() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    assert TOKEN_BYTES * 8 >= 128
    for token in tokens:
        assert well_formed(token)
        hashed = token_hash(token)
        assert len(hashed) == 64
        assert token not in hashed
    assert not well_formed("abc")
    assert not well_formed("a" * 42 + "/")
    assert not well_formed("a" * 44)


def test_a_link_goes_before_the_signature_and_into_the_html_button() -> None:
    email = Email(
        "Subject", "Hello\n\nBody.\n\n-- \nsubreq", f"<html><body><p>x</p>{HTML_MARK}</body></html>"
    )
    until = datetime(2026, 1, 8, 9, 0, tzinfo=UTC)
    linked = with_link(email, Link("decision", "https://c.example/r/T?a=<b>", until), "en")
    body, signature = linked.text.split("\n-- \n")
    assert "Review and decide: https://c.example/r/T?a=<b>" in body
    assert "works until 8 January 2026 at 09:00 UTC" in body
    assert signature == "subreq"
    assert linked.html.index("https://c.example/r/T?a=&lt;b&gt;") < linked.html.index(HTML_MARK)
    assert "<b>" not in linked.html
    italian = with_link(email, Link("sign_in", "https://c.example/signin/T", until), "it")
    assert "Accedi: https://c.example/signin/T" in italian.text
    assert "8 gennaio 2026" in italian.text
    plain = with_link(Email("S", "no signature", ""), Link("review", "https://c/requests/1"), "fr")
    assert plain.text.endswith(
        "View the request: https://c/requests/1\nYou may be asked to sign in.\n"
    )
    assert plain.html == ""


def test_sessions_and_forms_are_signed_and_bound() -> None:
    signer = Signer(SECRET)
    session = Session("sid-1", "acme", "acme-admin")
    assert signer.session(signer.cookie(session)) == session
    assert signer.session(signer.cookie(session) + "x") is None
    assert signer.session(Signer("t" * 32).cookie(session)) is None
    assert signer.session(None) is None
    token = signer.form_token("sid-1", "decide")
    form_id = signer.check_form(token, "sid-1", "decide")
    assert form_id is not None
    assert signer.check_form(token, "sid-2", "decide") is None  # another session's
    assert signer.check_form(token, "sid-1", "cancel") is None  # another action's
    assert signer.check_form(None, "sid-1", "decide") is None
    assert signer.check_form("x" * 600, "sid-1", "decide") is None
    assert signer.form_token("sid-1", "decide") != token  # a form id per rendering


def test_a_command_key_is_derived_from_the_form() -> None:
    key = message_id("web", "sid", "form", "decide")
    assert key == message_id("web", "sid", "form", "decide")
    assert key.startswith("web:")
    assert (
        len(
            {
                key,
                message_id("web", "sid", "form2", "decide"),
                message_id("email_link", "sid", "form", "decide"),
            }
        )
        == 3
    )


def test_every_response_header_of_c5() -> None:
    headers = {k.decode(): v.decode() for k, v in SECURITY_HEADERS}
    policy = headers["content-security-policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-content-type-options"] == "nosniff"


OWNED = {"support": "professional"}
ADDABLE = {"guide": ["team", "professional", "enterprise"]}


def test_the_change_form_becomes_the_contract_s_change_items() -> None:
    form = change_form(
        {
            "seats.support": "5",
            "plan.support": "enterprise",
            "add.guide": "1",
            "addplan.guide": "professional",
            "addseats.guide": "",
            "note": "  new team  ",
        },
        OWNED,
        ADDABLE,
    )
    assert form.changes == [
        {"type": "add_seats", "product": "support", "quantity": 5},
        {"type": "upgrade_plan", "product": "support", "plan": "enterprise"},
        {"type": "add_product", "product": "guide", "plan": "professional"},
    ]
    assert form.note == "new team"
    assert (
        change_form({"seats.support": "0", "plan.support": "professional"}, OWNED, ADDABLE).changes
        == []
    )


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"seats.suite": "1"}, "seats.suite"),
        ({"add.support": "1"}, "add.support"),
        ({"seats.support": "-1"}, "whole number"),
        ({"seats.support": "1e3"}, "whole number"),
        ({"seats.support": "100001"}, "whole number"),
        ({"note": "x" * 2001}, "note"),
    ],
)
def test_a_forged_or_broken_change_form_is_refused(fields: dict[str, str], says: str) -> None:
    with pytest.raises(FormRefused) as refused:
        change_form(fields, OWNED, ADDABLE)
    assert refused.value.status == 400
    assert says in str(refused.value.values)


def test_the_console_s_settings_say_what_is_wrong_one_line_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SUBREQ_WEB_SECRET", "short")
    monkeypatch.setenv("SUBREQ_PUBLIC_URL", "ftp://console")
    monkeypatch.setenv("SUBREQ_LINK_TTL", "soon")
    monkeypatch.setenv("SUBREQ_WEB_PORT", "70000")
    with pytest.raises(ConfigurationError) as bad:
        load_settings()
    message = str(bad.value)
    for name in ("SUBREQ_WEB_SECRET", "SUBREQ_PUBLIC_URL", "SUBREQ_LINK_TTL", "SUBREQ_WEB_PORT"):
        assert name in message
    assert "32 bytes" in message
    monkeypatch.setenv("SUBREQ_WEB_SECRET", "x" * 32)
    monkeypatch.setenv("SUBREQ_PUBLIC_URL", "https://console.example/")
    monkeypatch.delenv("SUBREQ_LINK_TTL")
    monkeypatch.delenv("SUBREQ_WEB_PORT")
    settings = load_settings()
    assert settings.public_url == "https://console.example"
    assert settings.link_ttl == timedelta(hours=72)
    assert settings.web_port == 8080


def test_both_languages_have_every_word() -> None:
    assert set(texts._EN) == set(texts._IT)
    t = texts.translator("it-IT")
    assert t("nav.requests") == "Richieste"
    assert texts.translator("de")("nav.requests") == "Requests"
    assert texts.from_accept_language("it-IT,it;q=0.9,en;q=0.8") == "it"
    assert texts.from_accept_language("fr-FR,fr;q=0.9") == "en"
    assert texts.from_accept_language(None) == "en"


def test_every_delivery_status_has_words_in_both_languages() -> None:
    """The request page names each "who was told" row's delivery state."""
    for status in (
        record_states.PENDING,
        record_states.SENDING,
        record_states.RETRYING,
        record_states.SENT,
        record_states.FAILED,
    ):
        assert f"delivery.{status}" in texts._EN
        assert f"delivery.{status}" in texts._IT
