"""Who is signed in to the console.

Sign-in takes a ``[[users]]`` e-mail address and the password whose scrypt hash is the
user's ``smtp_password_hash`` (checked as SMTP AUTH checks it, in a thread: scrypt is
slow on purpose). After ``[console] max_failures`` failures for one address within
``lockout`` the address is locked out for ``lockout``, even with the right password;
the counters are the mailbox's rate limits, so the nodes of a cluster count together.
An unknown address counts like a known one, and is answered the same way.

A session is a random cookie (HttpOnly, SameSite=Strict, Path=/console/, Secure over
TLS); the mailbox keeps only its SHA-256, with the address and an expiry
(``session_lifetime``). The CSRF token of a session is an HMAC of its cookie: every
form carries it, htmx sends it as ``X-CSRF-Token``, and every POST without the right
one is refused. The sign-in form, before there is a session, is protected the same way
by a second cookie whose value the form repeats.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from starlette.requests import Request
from starlette.responses import Response

from gatewayd.config.settings import Settings, User
from gatewayd.ingress.senders import login
from gatewayd.logging import get_logger
from gatewayd.mailbox import Mailbox

log = get_logger("gatewayd.console")

COOKIE = "gwd_session"
LOGIN_COOKIE = "gwd_login"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
PATH = "/console/"


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in user and their session's CSRF token."""

    user: User
    key_hash: str
    csrf: str

    @property
    def admin(self) -> bool:
        return self.user.api_admin


@dataclass(frozen=True, slots=True)
class LockedOut:
    until: datetime


def key_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"gatewayd console csrf", hashlib.sha256).hexdigest()[:40]


def set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def same(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())


class Sessions:
    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def viewer(self, request: Request, settings: Settings) -> Viewer | None:
        token = request.cookies.get(COOKIE)
        if not token or len(token) > 200:
            return None
        digest = key_hash(token)
        session = await self.mailbox.find_session(digest)
        if session is None:
            return None
        user = settings.user_by_email(session.email)
        if user is None or not user.smtp_password_hash:
            return None  # removed from the config, or their password taken away (SIGHUP)
        return Viewer(user, digest, csrf_for(token))

    async def sign_in(
        self, settings: Settings, email: str, password: str, peer: str
    ) -> User | LockedOut | None:
        """The user, LockedOut, or None for a wrong address or password."""
        console = settings.console
        email = email.strip().lower()[:320]
        key = f"console-login:{email}"
        now = self.mailbox.clock.now()
        state = await self.mailbox.rate_peek(key, window=console.lockout)
        if state.penalty_until is not None and state.penalty_until > now:
            log.warning("console.locked_out", email=email, peer=peer)
            return LockedOut(state.penalty_until)
        user = await asyncio.to_thread(login, settings, email, password)
        if user is not None:
            log.info("console.signed_in", email=email, peer=peer)
            return user
        state = await self.mailbox.rate_add(key, window=console.lockout)
        log.warning("console.sign_in_failed", email=email, peer=peer, failures=state.count)
        if state.count >= console.max_failures:
            until = now + timedelta(seconds=console.lockout)
            await self.mailbox.rate_penalise(key, until)
            log.warning("console.locked_out", email=email, peer=peer, until=until.isoformat())
        return None

    async def open(self, settings: Settings, user: User) -> str:
        """A new session for ``user``; its cookie value."""
        token = secrets.token_urlsafe(32)
        await self.mailbox.open_session(
            key_hash(token), user.emails[0], lifetime=settings.console.session_lifetime
        )
        return token

    async def close(self, viewer: Viewer) -> None:
        await self.mailbox.close_session(viewer.key_hash)
        log.info("console.signed_out", email=viewer.user.emails[0])
