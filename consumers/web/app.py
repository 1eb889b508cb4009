"""The console's ASGI application: routes, the guard (C5 headers, body limit) and error
pages that say what went wrong and never show a traceback."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from importlib.resources import files

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from consumers.web.console import Console
from consumers.web.pages import links, requests, signin, subscription
from consumers.web.security import Guard, Receive, Scope, Send
from consumers.web.texts import translator
from policies.decision import ErrorCode
from workflow.errors import TransientError

log = logging.getLogger(__name__)

FORM_COMMAND = "console.form"
"""The audit log's name for a body refused before any page read it."""

Page = Callable[[Console, Request], Awaitable[Response]]


def create_app(console: Console) -> Guard:
    def page(handler: Page) -> Callable[[Request], Awaitable[Response]]:
        return partial(handler, console)

    routes = [
        Route("/", page(signin.home), methods=["GET"]),
        Route("/signin", page(signin.sign_in_page), methods=["GET"]),
        Route("/signin", page(signin.ask_for_link), methods=["POST"]),
        Route("/signin/{token}", page(signin.link_page), methods=["GET"]),
        Route("/signin/{token}", page(signin.use_link), methods=["POST"]),
        Route("/signout", page(signin.sign_out), methods=["POST"]),
        Route("/subscription", page(subscription.subscription_page), methods=["GET"]),
        Route("/subscription", page(subscription.submit), methods=["POST"]),
        Route("/subscription/preview", page(subscription.preview), methods=["POST"]),
        Route("/requests", page(requests.requests_page), methods=["GET"]),
        Route("/requests/{request_id}", page(requests.request_page), methods=["GET"]),
        Route("/requests/{request_id}/{action:str}", page(_only(requests.act)), methods=["POST"]),
        Route("/r/{token}", page(links.link_page), methods=["GET"]),
        Route("/r/{token}/{action:str}", page(_only(links.act)), methods=["POST"]),
        Mount(
            "/static", StaticFiles(directory=str(files("consumers.web") / "static")), name="static"
        ),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        key = {404: "error.404", 405: "error.405"}.get(status, "error.500")
        return await _plain_error(console, request, status, key)

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("console: %s %s failed", request.method, request.url.path)
        return await _plain_error(console, request, 500, "error.500")

    async def gone(request: Request, exc: Exception) -> Response:
        """The browser left mid-body (a live preview cut short by a click): nobody reads
        an answer, and nothing was done."""
        return Response(status_code=400)

    async def busy(request: Request, exc: Exception) -> Response:
        log.warning("console: %s", exc)
        return await _plain_error(console, request, 503, "error.busy")

    app = Starlette(
        routes=routes,
        exception_handlers={
            HTTPException: http_error,
            ClientDisconnect: gone,
            TransientError: busy,
            Exception: server_error,
        },
    )

    async def too_large(scope: Scope, receive: Receive, send: Send) -> None:
        """A declared body over the limit: refused unread, and audited."""
        request = Request(scope, receive)
        try:
            visit = await console.visit(request)
            response: Response = await console.refuse(
                visit, 413, "error.413", command=FORM_COMMAND, code=ErrorCode.INVALID_MESSAGE
            )
        except TransientError:
            response = await _plain_error(console, request, 413, "error.413")
        await response(scope, receive, send)

    return Guard(app, too_large)


def _only(handler: Page) -> Page:
    """``/decide`` and ``/cancel`` only; any other action is 404."""

    async def checked(console: Console, request: Request) -> Response:
        if request.path_params["action"] not in ("decide", "cancel"):
            raise HTTPException(404)
        return await handler(console, request)

    return checked


async def _plain_error(console: Console, request: Request, status: int, key: str) -> Response:
    """An error page that needs nothing from the database (it may be what failed)."""
    t = translator("en")
    try:
        visit = await console.visit(request)
        return console.error(visit, status, key)
    except Exception:
        return HTMLResponse(
            f"<!DOCTYPE html><title>{t('error.title')}</title><h1>{t('error.title')}</h1>"
            f"<p>{t(key)}</p>",
            status_code=status,
        )
