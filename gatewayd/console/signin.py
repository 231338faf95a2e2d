"""Sign-in and sign-out pages (see sessions.py for how they are kept safe)."""

from __future__ import annotations

import secrets
from datetime import UTC

from starlette.requests import Request
from starlette.responses import Response

from gatewayd.console.sessions import (
    COOKIE,
    LOGIN_COOKIE,
    LockedOut,
    clear_cookie,
    set_cookie,
)
from gatewayd.console.web import BASE, NotSignedIn, check_csrf, current, redirect

LOGIN_FORM_SECONDS = 3600


def _next(value: object) -> str:
    if isinstance(value, str) and value.startswith(BASE + "/") and "//" not in value:
        return value
    return f"{BASE}/"


async def form(request: Request) -> Response:
    console = current(request)
    try:
        await console.viewer(request)
    except NotSignedIn:
        pass
    else:
        return redirect(_next(request.query_params.get("next")))
    return _form(request, status=200, problem=None, email="")


def _form(request: Request, *, status: int, problem: str | None, email: str) -> Response:
    console = current(request)
    token = secrets.token_urlsafe(24)
    response = console.page(
        "login.html",
        request,
        status=status,
        login_token=token,
        problem=problem,
        email=email,
        next=_next(request.query_params.get("next")),
    )
    set_cookie(request, response, LOGIN_COOKIE, token, LOGIN_FORM_SECONDS)
    return response


async def submit(request: Request) -> Response:
    console = current(request)
    data = await request.form(max_files=0, max_fields=10)
    check_csrf(request, data, request.cookies.get(LOGIN_COOKIE, "") or secrets.token_hex(8))
    email = str(data.get("email", ""))[:320]
    password = str(data.get("password", ""))[:1024]
    peer = request.client.host if request.client else ""
    found = await console.sessions.sign_in(console.settings, email, password, peer)
    if isinstance(found, LockedOut):
        minutes = max(1, round((found.until - console.mailbox.clock.now()).total_seconds() / 60))
        until = found.until.astimezone(UTC).strftime("%H:%M UTC")
        problem = f"Too many failed sign-ins: try again in {minutes} minutes ({until})."
        return _form(request, status=429, problem=problem, email=email)
    if found is None:
        return _form(request, status=401, problem="Wrong e-mail address or password.", email=email)
    token = await console.sessions.open(console.settings, found)
    response = redirect(_next(data.get("next")))
    set_cookie(request, response, COOKIE, token, int(console.settings.console.session_lifetime))
    clear_cookie(request, response, LOGIN_COOKIE)
    return response


async def sign_out(request: Request) -> Response:
    console = current(request)
    viewer, _ = await console.posted(request)
    await console.sessions.close(viewer)
    response = redirect(f"{BASE}/login")
    clear_cookie(request, response, COOKIE)
    return response
