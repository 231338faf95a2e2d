"""``POST …/sms`` the short way: answered by the HTTP connection itself
(api/protocol.py, a ``ShortWay``), past uvicorn's answer machinery, the ASGI middleware
(the Gate, api/gate.py) and FastAPI's routing, for the one request that comes thousands
of times a second from an integration.

FastAPI spends about a third of a millisecond of processor time on each request
(dependency resolution, the pydantic model, its response machinery), and the ASGI
layers around it (a task, the middleware, uvicorn's ``send``) a tenth more: more than
the rest of the work together. This handler takes a request only when everything about
it is plainly right, and does exactly what the Gate and the FastAPI route (send.py) do
with it:

- ``POST /restapi/v1.0/account/{accountId}/extension/{extensionId}/sms`` with a
  declared Content-Length of at most ``SHORT_BODY_LIMIT`` (above the largest valid
  body; the Gate's limits stay with the app) and no ``Expect: 100-continue``, read
  whole, with ``Content-Type: application/json``;
- a bearer token whose user is known without a query (a configured user's, or a stored
  token's cached answer: ``Authenticator.known_user``), and ``accountId`` and
  ``extensionId`` that are ``~`` or that user's own;
- no rate limit counts this user (``[api] rate_limits = false``, or the user's
  ``rate_limits = false``): the limits' bookkeeping stays with the FastAPI route;
- the body has the shape of ``SmsBody`` (``from.phoneNumber``, one to ten ``to`` with a
  ``phoneNumber`` of 1 to 32 characters, a ``text`` of 1 to 1000), checked by hand;
- admission (gatewayd/admission/sms.py) admits it.

It then stores the message (group commit; the answer only after the commit), wakes
the dispatchers, and answers 200 with the message's JSON and the same X-Rate-Limit-*
headers. Anything else (no token, a token to look up, another extension, a body FastAPI
would refuse, a refusal) is handed to the app with the body as read, so every error is
worded by the one route that words them. A mailbox that is unavailable is 503 with
Retry-After, any other failure 500, as the app answers them.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from uvicorn._types import HTTPScope

from gatewayd.admission import Refusal
from gatewayd.api.auth import USER_STATE
from gatewayd.api.deps import MEDIUM, PREFIX, Context, public_url
from gatewayd.api.errors import UNAVAILABLE, UNAVAILABLE_RETRY_AFTER, ErrorCode, error_body
from gatewayd.api.protocol import Answer, Reply
from gatewayd.api.send import sms_batch
from gatewayd.config.settings import User
from gatewayd.errors import StoreUnavailable
from gatewayd.logging import get_logger
from gatewayd.mailbox import Message, NewMessage

log = get_logger("gatewayd.api")

GROUP = MEDIUM  # the route's rate-limit group (deps.MediumWriter, as send.py's)
# Bytes. A valid body is at most ~13 KB (1000 characters, each escaped as a surrogate
# pair). Below uvicorn's read high-water mark (64 KiB), past which it stops reading
# until the application reads the body, which the short way never does.
SHORT_BODY_LIMIT = 32 * 1024
_PATH = re.compile(
    re.escape(f"{PREFIX}/sms")
    .replace(re.escape("{accountId}"), "([^/]+)")
    .replace(re.escape("{extensionId}"), "([^/]+)")
)
_JSON = (b"content-type", b"application/json")
_UNAVAILABLE = Answer(
    503,
    (_JSON, (b"retry-after", UNAVAILABLE_RETRY_AFTER.encode())),
    orjson.dumps(error_body(ErrorCode.INTERNAL, UNAVAILABLE)),
)
_FAILED = Answer(500, (_JSON,), orjson.dumps(error_body(ErrorCode.INTERNAL, UNAVAILABLE)))


class SmsRoute:
    """The ``ShortWay`` of the API's connections: the plainly right ``POST …/sms``."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self._headers = (
            _JSON,
            *(
                (name.lower().encode(), value.encode())
                for name, value in self.context.auth.limiter.headers(GROUP).items()
            ),
        )

    def wants(self, scope: HTTPScope) -> bool:
        """The route, a small declared body, a known user who may post here unlimited
        (left in the request's state, as the Gate leaves it). Else the app's at once:
        an unknown token is refused there before the body is read."""
        if scope["method"] != "POST" or not scope["path"].endswith("/sms"):
            return False
        where = _PATH.fullmatch(scope["path"])
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if where is None or not length.isdigit() or int(length) > SHORT_BODY_LIMIT:
            return False
        auth = self.context.auth
        user = auth.known_user(headers.get(b"authorization", b"").decode("latin-1"))
        if (
            user is None
            or auth.limiter.limits(user)
            or where.group(1) not in ("~", str(user.account_id))
            or where.group(2) not in ("~", str(user.extension_id))
        ):
            return False
        scope["state"][USER_STATE] = user
        return True

    def answer(self, scope: HTTPScope, body: bytes, reply: Reply) -> None:
        try:
            batch = self._admitted(scope, body)
            stored = None if batch is None else self.context.mailbox.create_texts(batch)
        except Exception:
            log.exception("api.internal_error", path=scope["path"], method="POST")
            reply(_FAILED)
            return
        if stored is None:
            reply(None)  # (outside the try: a failure there is not answered twice)
        else:
            stored.add_done_callback(lambda stored: reply(self._stored(scope, stored)))

    def _stored(self, scope: HTTPScope, stored: asyncio.Future[list[Message]]) -> Answer:
        """The answer once the messages are committed (or not)."""
        try:
            made = stored.result()
            self.context.on_queued(made)
            json = made[0].to_json(public_url(self.context.settings))
            return Answer(200, self._headers, orjson.dumps(json))
        except StoreUnavailable as exc:
            log.warning("api.mailbox_unavailable", path=scope["path"], error=str(exc))
            return _UNAVAILABLE
        except Exception:
            log.exception("api.internal_error", path=scope["path"], method="POST")
            return _FAILED

    def _admitted(self, scope: HTTPScope, body: bytes) -> list[NewMessage] | None:
        """The messages to store, or None: the app answers this request."""
        kind = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                kind = value.split(b";", 1)[0].strip().lower()
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
        user: User = scope["state"][USER_STATE]
        try:
            return sms_batch(self.context, user, sender, numbers, text)
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
