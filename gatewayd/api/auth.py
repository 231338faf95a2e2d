"""Who is calling, which mailbox they may touch, and how often.

A caller is the user whose API token (``Authorization: Bearer <token>``) hashes to the
``api_token_hash`` of their ``[[users]]`` entry, or to a token ``gatewayd token create``
kept in the mailbox for them (not revoked, not expired). The token is checked before
FastAPI reads a body (api/gate.py, which leaves the user in the request's state; the
short way of ``POST …/sms`` asks ``known_user`` at the request's head); the
dependencies here add the rest. Tokens in the mailbox take effect at once, without a
reload: each is looked up by its hash (one index probe) and the answer, found or not,
is kept for ``TOKEN_CACHE_SECONDS`` (1 s), so a busy client costs one query a second
and a revoked token fails within a second on every node of a cluster. Hashes are
compared in constant time. ``~`` in the path is the caller's own
account or extension. A user reads and changes only their own extension; a user with
``api_admin = true`` may also read (GET) every extension of their account. Another
account is 404 (CMN-102, nothing there for the caller), another extension 403 CMN-419.

Rate limits per user and group, as the platform's defaults: Light 50, Medium 40, Heavy
10 requests a minute ([api] rate_limits; a user with ``rate_limits = false``, a trusted
integration, is never limited). Every answer carries X-Rate-Limit-Group, -Limit,
-Remaining and -Window; past the limit the answer is 429 CMN-301 with Retry-After, and
the caller is penalised for 60 s (a request during the penalty starts it again).
"""

from __future__ import annotations

import hmac
import time
from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request, Response

from gatewayd.api.errors import ApiError, ErrorCode, not_found
from gatewayd.config.settings import Settings, User
from gatewayd.credentials import hash_token
from gatewayd.mailbox import Mailbox

WINDOW = 60.0
PENALTY = 60.0
USER_STATE = "gatewayd_user"  # where api/gate.py leaves the user, in scope["state"]
GROUPS = {"Light": 50, "Medium": 40, "Heavy": 10}
TOKEN_CACHE_SECONDS = 1.0
TOKEN_CACHE_SIZE = 10_000  # entries; when full, the cache starts afresh


@dataclass(frozen=True, slots=True)
class Caller:
    user: User
    account_id: int
    extension_id: int  # the mailbox this request is about


class RateLimiter:
    """Requests per user and group in each minute's window, counted in the mailbox (so
    the nodes of a cluster count together); over the limit, a penalty minute."""

    def __init__(self, mailbox: Mailbox, *, enabled: bool) -> None:
        self.mailbox = mailbox
        self.enabled = enabled

    def limits(self, user: User) -> bool:
        """Whether ``user``'s calls are counted."""
        return self.enabled and user.rate_limits

    @staticmethod
    def headers(group: str, used: int = 0) -> dict[str, str]:
        """The X-Rate-Limit-* headers of an answer."""
        limit = GROUPS[group]
        return {
            "X-Rate-Limit-Group": group,
            "X-Rate-Limit-Limit": str(limit),
            "X-Rate-Limit-Window": str(int(WINDOW)),
            "X-Rate-Limit-Remaining": str(max(0, limit - used)),
        }

    async def check(self, user: User, group: str, response: Response) -> None:
        limit = GROUPS[group]
        used = 0
        if self.limits(user):
            key = f"api:{user.extension_id}:{group}"
            state = await self.mailbox.rate_add(key, window=WINDOW)
            now = self.mailbox.clock.now()
            penalised = state.penalty_until is not None and now < state.penalty_until
            if penalised or state.count > limit:
                await self.mailbox.rate_penalise(key, now + timedelta(seconds=PENALTY))
                refused = {**self.headers(group, limit), "Retry-After": str(int(PENALTY))}
                raise ApiError(
                    429,
                    ErrorCode.RATE_EXCEEDED,
                    f"Request rate exceeded ({group}: {limit} a minute)",
                    headers=refused,
                )
            used = state.count
        response.headers.update(self.headers(group, used))


def _digest(header: str) -> str | None:
    """The hash of the bearer token in an ``Authorization`` header; None: there is none."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return hash_token(token)


class Authenticator:
    def __init__(self, settings: Settings, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.limiter = RateLimiter(mailbox, enabled=settings.api.rate_limits)
        self._stored: dict[str, tuple[float, User | None]] = {}  # hash -> (until, user)
        self.reload(settings)

    def reload(self, settings: Settings) -> None:
        """New users and tokens (SIGHUP); requests in flight finish with the old ones."""
        self.settings = settings
        self._by_hash = {u.api_token_hash: u for u in settings.users if u.api_token_hash}
        self._stored.clear()

    async def user_for(self, request: Request) -> User:
        """The user api/gate.py found for this request, or the one its token names."""
        found = request.scope.get("state", {}).get(USER_STATE)
        if isinstance(found, User):
            return found
        return await self.user_for_header(request.headers.get("authorization", ""))

    async def user_for_header(self, header: str) -> User:
        """The user an ``Authorization`` header names, or ApiError 401."""
        digest = _digest(header)
        if digest is None:
            raise ApiError(
                401,
                ErrorCode.LOGIN_REQUIRED,
                "Login to extension required: send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        user = self._configured(digest) or await self._stored_user(digest)
        if user is None:
            raise ApiError(
                401,
                ErrorCode.INVALID_TOKEN,
                "Invalid token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return user

    def known_user(self, header: str) -> User | None:
        """The user of a valid token in ``header`` when that is known without a query:
        a configured user's token, or a stored one whose answer is cached. None
        otherwise (no token, a wrong one, or one to look up): then ``user_for_header``
        has the last word. (The short way of POST …/sms: api/sms_route.py.)"""
        digest = _digest(header)
        if digest is None:
            return None
        user = self._configured(digest)
        if user is not None:
            return user
        cached = self._stored.get(digest)
        return cached[1] if cached is not None and cached[0] > time.monotonic() else None

    def _configured(self, digest: str) -> User | None:
        """The ``[[users]]`` entry whose token hashes to ``digest``."""
        user = self._by_hash.get(digest)
        # constant-time compare against the one candidate (the dict lookup leaks nothing
        # useful: it is keyed by the hash, not the token)
        if user is not None and hmac.compare_digest(user.api_token_hash, digest):
            return user
        return None

    async def _stored_user(self, digest: str) -> User | None:
        """The user of a token kept in the mailbox (valid now), through the cache."""
        now = time.monotonic()
        cached = self._stored.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self.mailbox.token_by_hash(digest)
        user = None
        if (
            found is not None
            and hmac.compare_digest(found.token_hash, digest)
            and found.state(self.mailbox.clock.now()) == "active"
        ):
            owner = self.settings.user_by_extension(found.extension_id)
            if owner is not None and owner.account_id == found.account_id:
                user = owner
        if len(self._stored) >= TOKEN_CACHE_SIZE:
            self._stored.clear()
        self._stored[digest] = (now + TOKEN_CACHE_SECONDS, user)
        return user

    async def caller(
        self,
        request: Request,
        response: Response,
        account: str,
        extension: str,
        group: str,
        *,
        write: bool,
    ) -> Caller:
        user = await self.user_for(request)
        await self.limiter.check(user, group, response)
        account_id = _resolve(account, user.account_id, "accountId")
        if account_id != user.account_id:
            raise not_found("accountId", account)
        extension_id = _resolve(extension, user.extension_id, "extensionId")
        if extension_id != user.extension_id:
            known = any(
                u.extension_id == extension_id and u.account_id == account_id
                for u in self.settings.users
            )
            if not known:
                raise not_found("extensionId", extension)
            if write or not user.api_admin:
                raise ApiError(
                    403,
                    ErrorCode.EXTENDED_SCOPE,
                    "Calling for another extension needs extended scope",
                    parameter="extensionId",
                    value=extension,
                )
        return Caller(user, account_id, extension_id)


def _resolve(value: str, own: int, name: str) -> int:
    if value == "~":
        return own
    if value.isdigit() and len(value) < 19:
        return int(value)
    raise not_found(name, value)
