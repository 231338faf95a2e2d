"""The console as an ASGI app, mounted at /console on the API's app (``mount``).

Every answer carries a Content-Security-Policy that allows scripts, styles, images
and requests only from the console itself (no inline script or style anywhere: the
pages' scripts are files, htmx is configured not to add styles or evaluate code), and
is never framed. Pages are not cached (they show private data); the static files are,
under a versioned path.

Errors become pages: not signed in → the sign-in page (or 401 for htmx and POSTs), a
message the viewer may not see → 404, a change the status machine refuses → 409 with
its reason, the mailbox unreachable → 503. Nothing shows a Python exception.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gatewayd import __version__
from gatewayd.api.deps import Context
from gatewayd.console import dashboard, messages, send, signin
from gatewayd.console.images import PageImages
from gatewayd.console.live import Dashboard
from gatewayd.console.web import BASE, Console, NotSignedIn, Refused, current
from gatewayd.errors import BlobError, InvalidTransition, MessageNotFound, StoreError
from gatewayd.logging import get_logger

log = get_logger("gatewayd.console")

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send_: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send_)
            return
        static = f"{BASE}/static/" in scope["path"]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CSP)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["X-Frame-Options"] = "DENY"
                headers["Referrer-Policy"] = "same-origin"
                if static:
                    headers["Cache-Control"] = "public, max-age=604800"
                else:
                    headers.setdefault("Cache-Control", "no-store")
            await send_(message)

        await self.app(scope, receive, with_headers)


async def _not_signed_in(request: Request, exc: Exception) -> Response:
    console = current(request)
    if request.method != "GET" or request.headers.get("hx-request") == "true":
        response = console.page(
            "error.html", request, status=401, title="Signed out", detail="Sign in again."
        )
        response.headers["HX-Redirect"] = f"{BASE}/login"
        return response
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{BASE}/login?{urlencode({'next': target})}", status_code=303)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refused)
    return current(request).page(
        "error.html", request, status=exc.status, title=exc.title, detail=exc.detail
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    return current(request).page(
        "error.html",
        request,
        status=404,
        title="Not found",
        detail="There is nothing here, or it is not yours to see.",
    )


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title = "Not found" if exc.status_code == 404 else "Not allowed"
    return current(request).page(
        "error.html", request, status=exc.status_code, title=title, detail=""
    )


async def _transition(request: Request, exc: Exception) -> Response:
    reason = str(exc).rpartition("refused: ")[2]
    return current(request).page(
        "error.html", request, status=409, title="Not possible now", detail=reason
    )


async def _store(request: Request, exc: Exception) -> Response:
    log.error("console.store_failed", path=request.url.path, error=str(exc))
    return current(request).page(
        "error.html",
        request,
        status=503,
        title="The mailbox is not available",
        detail="Try again in a moment.",
    )


async def _root(request: Request) -> Response:
    console = current(request)
    viewer = await console.viewer(request)
    return RedirectResponse(
        f"{BASE}/dashboard" if viewer.admin else f"{BASE}/messages", status_code=303
    )


def create_console(context: Context) -> Starlette:
    """The console app for the daemon's parts in ``context``."""
    routes = [
        Route("/", _root),
        Route("/login", signin.form, methods=["GET"]),
        Route("/login", signin.submit, methods=["POST"]),
        Route("/logout", signin.sign_out, methods=["POST"]),
        Route("/dashboard", dashboard.page),
        Route("/dashboard/live", dashboard.live),
        Route("/dashboard/series", dashboard.series),
        Route("/messages", messages.messages_page),
        Route("/messages/{message_id}", messages.message_page),
        Route("/messages/{message_id}/{action}", messages.action, methods=["POST"]),
        Route("/messages/{message_id}/attachments/{attachment_id}", messages.attachment),
        Route("/messages/{message_id}/pages/{page}.png", messages.page_image),
        Route("/conversations", messages.conversations_page),
        Route("/conversations/{conversation_id}", messages.conversation_page),
        Route("/send/sms", send.sms_form, methods=["GET"]),
        Route("/send/sms", send.sms_send, methods=["POST"]),
        Route("/send/sms/count", send.sms_count, methods=["POST"]),
        Route("/send/fax", send.fax_form, methods=["GET"]),
        Route("/send/fax", send.fax_post, methods=["POST"]),
        Route("/previews/{token}/{page}.png", send.preview_image),
        Mount(f"/static/{__version__}", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            NotSignedIn: _not_signed_in,
            Refused: _refused,
            MessageNotFound: _not_found,
            InvalidTransition: _transition,
            BlobError: _not_found,
            StoreError: _store,
            HTTPException: _http,
        },
    )
    app.add_middleware(SecurityHeaders)
    console = Console(context)
    app.state.console = console
    app.state.dashboard = Dashboard(context.mailbox, context.live)
    data_dir = context.settings.mailbox.data_dir / "console"
    app.state.images = PageImages(
        context.mailbox, data_dir, context.settings.console.image_cache_bytes
    )
    return app


def mount(app: Starlette, context: Context) -> Starlette:
    """Serve the console under /console/ on ``app`` (the API's), outside its OpenAPI
    document. Returns the console app."""
    console = create_console(context)
    app.mount(BASE, console, name="console")
    return console
