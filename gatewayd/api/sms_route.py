"""``POST …/sms`` the short way: a plain ASGI middleware between the Gate (api/gate.py:
the token checked before the body is read, the body limits) and FastAPI's routing, for
the one request that comes thousands of times a second from an integration.

FastAPI spends about a third of a millisecond of processor time on each request
(dependency resolution, the pydantic model, its response machinery): more than the
rest of the work together. This handler takes a request only when everything about it
is plainly right, and does exactly what the FastAPI route (send.py) does with it:

- ``POST /restapi/v1.0/account/{accountId}/extension/{extensionId}/sms`` with a JSON
  body (``Content-Type: application/json``) of a declared length (the Gate keeps it
  within its limit),
  read whole;
- the user the Gate found for the bearer token, and ``accountId`` and ``extensionId``
  that are ``~`` or that user's own;
- no rate limit counts this user (``[api] rate_limits = false``, or the user's
  ``rate_limits = false``): the limits' bookkeeping stays with the FastAPI route;
- the body has the shape of ``SmsBody`` (``from.phoneNumber``, one to ten ``to`` with a
  ``phoneNumber`` of 1 to 32 characters, a ``text`` of 1 to 1000), checked by hand;
- admission (gatewayd/admission/sms.py) admits it.

It then stores the message (group commit; the answer only after the commit), wakes
the dispatchers, and answers 200 with the message's JSON and the same X-Rate-Limit-*
headers. Anything else (no token, another extension, a body FastAPI would refuse, a
refusal) is handed to the FastAPI app with the body as read, so every error is worded
by the one route that words them. A mailbox that is unavailable is 503 with
Retry-After, as there; other failures go up as there too.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gatewayd.admission import Refusal, sms
from gatewayd.api.auth import USER_STATE
from gatewayd.api.deps import MEDIUM, PREFIX, Context, public_url
from gatewayd.api.errors import UNAVAILABLE, UNAVAILABLE_RETRY_AFTER, ErrorCode, error_body
from gatewayd.api.send import ORIGIN, SMS_UNIT_LIMIT
from gatewayd.config.settings import User
from gatewayd.errors import StoreUnavailable
from gatewayd.logging import get_logger
from gatewayd.mailbox import NewMessage

log = get_logger("gatewayd.api")

GROUP = MEDIUM  # the route's rate-limit group (deps.MediumWriter, as send.py's)
_PATH = re.compile(
    re.escape(f"{PREFIX}/sms")
    .replace(re.escape("{accountId}"), "([^/]+)")
    .replace(re.escape("{extensionId}"), "([^/]+)")
)
_UNAVAILABLE = orjson.dumps(error_body(ErrorCode.INTERNAL, UNAVAILABLE))


class SmsRoute:
    """ASGI app: the plainly right ``POST …/sms`` here, everything else to ``app``."""

    def __init__(self, app: ASGIApp, context: Context) -> None:
        self.app = app
        self.context = context
        self._headers = [
            (name.lower().encode(), value.encode())
            for name, value in self.context.auth.limiter.headers(GROUP).items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].endswith("/sms")
            or (where := _PATH.fullmatch(scope["path"])) is None
        ):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        user = scope.get("state", {}).get(USER_STATE)
        if (
            not length.isdigit()  # (the Gate has refused one over BODY_LIMIT)
            or not isinstance(user, User)
            or self.context.auth.limiter.limits(user)
            or where.group(1) not in ("~", str(user.account_id))
            or where.group(2) not in ("~", str(user.extension_id))
        ):
            await self.app(scope, receive, send)  # the route words what is wrong
            return
        body = await _read(receive)
        if body is None:
            return  # the client went away (or the Gate cut the body off)
        batch = self._admitted(headers, user, body)
        if batch is None:
            await self.app(scope, _replay(body, receive), send)
            return
        try:
            made = await asyncio.shield(self.context.mailbox.create_many(batch))
        except StoreUnavailable as exc:
            log.warning("api.mailbox_unavailable", path=scope["path"], error=str(exc))
            await _answer(
                send, 503, _UNAVAILABLE, [(b"retry-after", UNAVAILABLE_RETRY_AFTER.encode())]
            )
            return
        self.context.on_queued(made)
        await _answer(
            send,
            200,
            orjson.dumps(made[0].to_json(public_url(self.context.settings))),
            self._headers,
        )

    def _admitted(
        self, headers: dict[bytes, bytes], user: User, body: bytes
    ) -> list[NewMessage] | None:
        """The messages to store, or None: the FastAPI route answers this request."""
        kind = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
        if kind != b"application/json":
            return None
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        fields = _sms_body(data)
        if fields is None:
            return None
        sender, numbers, text = fields
        try:
            return sms.messages(
                text,
                numbers,
                user=user,
                settings=self.context.settings,
                origin=ORIGIN,
                from_number=sender,
                max_destinations=1,
                max_units=SMS_UNIT_LIMIT,
            )
        except Refusal:
            return None


def _phone(value: Any) -> str | None:
    """``{"phoneNumber": "..."}`` (other keys ignored) as PhoneNumberInfo takes it."""
    if not isinstance(value, dict):
        return None
    number = value.get("phoneNumber")
    if isinstance(number, str) and 1 <= len(number) <= 32:
        return number
    return None


def _sms_body(data: Any) -> tuple[str, list[str], str] | None:
    """(from, to, text) when ``data`` is a valid SmsBody; None when it is not plainly so."""
    if not isinstance(data, dict):
        return None
    sender = _phone(data.get("from"))
    to = data.get("to")
    text = data.get("text")
    if sender is None or not isinstance(to, list) or not 1 <= len(to) <= 10:
        return None
    if not isinstance(text, str) or not 1 <= len(text) <= 1000:
        return None
    numbers = [_phone(item) for item in to]
    if any(number is None for number in numbers):
        return None
    return sender, [n for n in numbers if n is not None], text


async def _read(receive: Receive) -> bytes | None:
    """The whole body (of its declared length: the server reads no further); None
    when the client went away."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` as if the body had not been read yet."""
    given = False

    async def again() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
