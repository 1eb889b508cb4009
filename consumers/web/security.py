"""Sessions, CSRF tokens, form identities and the headers every response carries
(console.md C1, C5, C6).

A session is a signed cookie (``HttpOnly``, ``SameSite=Lax``, ``Secure`` behind https)
holding a random session id and, once signed in, the member's account and user id; the
member is looked up again on every request, so a removed member is out at once. Every form
carries a CSRF token signed for the session, the action and a random form id: a POST
without it, with another session's, or for another action is refused. The command a form
becomes has a ``message_id`` derived from the session, the form id and the action, so two
submissions of one form have one effect (C6).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "subreq_session"
SESSION_AGE = 12 * 3600
"""Seconds a session lasts without signing in again."""
FORM_AGE = 4 * 3600
"""Seconds a rendered form stays valid."""
MAX_BODY = 16 * 1024
"""Bytes a form may send: the largest real one is well under this."""

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
)
"""C5, on every response (``no-store`` too: pages show a member's own account)."""


@dataclass(frozen=True)
class Session:
    sid: str
    account_id: str | None = None
    user_id: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.account_id is not None and self.user_id is not None


class Signer:
    """Signs sessions and forms with ``SUBREQ_WEB_SECRET``."""

    def __init__(self, secret: str) -> None:
        self._sessions = URLSafeTimedSerializer(secret, salt="subreq.session")
        self._forms = URLSafeTimedSerializer(secret, salt="subreq.form")

    def session(self, cookie: str | None) -> Session | None:
        if not cookie:
            return None
        try:
            data = self._sessions.loads(cookie, max_age=SESSION_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("s"), str):
            return None
        account, user = data.get("a"), data.get("u")
        return Session(
            data["s"],
            account if isinstance(account, str) else None,
            user if isinstance(user, str) else None,
        )

    def cookie(self, session: Session) -> str:
        return self._sessions.dumps(
            {"s": session.sid, "a": session.account_id, "u": session.user_id}
        )

    def form_token(self, bound_to: str, action: str) -> str:
        """A CSRF token for one rendered form: ``bound_to`` is the session id (or the
        link's token hash), ``action`` what the form does."""
        return self._forms.dumps({"b": bound_to, "a": action, "f": secrets.token_urlsafe(16)})

    def check_form(self, token: str | None, bound_to: str, action: str) -> str | None:
        """The form id of a valid token for this session and action, else ``None``."""
        if not token or len(token) > 512:
            return None
        try:
            data = self._forms.loads(token, max_age=FORM_AGE)
        except BadSignature:
            return None
        if (
            not isinstance(data, dict)
            or data.get("b") != bound_to
            or data.get("a") != action
            or not isinstance(data.get("f"), str)
        ):
            return None
        return str(data["f"])


def new_session() -> Session:
    return Session(secrets.token_urlsafe(24))


def message_id(channel: str, bound_to: str, form_id: str, action: str) -> str:
    """The command's idempotency key, derived from the form (C6)."""
    digest = hashlib.sha256(f"{channel}\x00{bound_to}\x00{form_id}\x00{action}".encode())
    return f"{channel}:{digest.hexdigest()}"


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Guard:
    """ASGI middleware: the C5 headers on every response, and a body whose declared
    ``Content-Length`` is over ``MAX_BODY`` refused before it is read (a body that streams
    in without one is counted by ``consumers.web.forms.read_form``)."""

    def __init__(self, app: ASGIApp, on_too_large: ASGIApp) -> None:
        self.app = app
        self.on_too_large = on_too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
                message["headers"] = [*headers, *SECURITY_HEADERS]
            await send(message)

        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
            await self.on_too_large(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


_OURS = frozenset(name for name, _ in SECURITY_HEADERS)
