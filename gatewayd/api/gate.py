"""What every request passes before FastAPI reads a byte of its body (pure ASGI). A
``POST …/sms`` that the connection answers itself (api/sms_route.py) never comes here:
the short way takes only a token whose user it knows and a body far below the limit,
and hands everything else here with its body unread or as read.

1. Under ``/restapi/`` and ``/gatewayd/``, the bearer token: a request without a valid
   one is answered 401 (CMN-405 or OAU-149) and the connection closed, its body unread. The user
   found is left in the request's state for the ``Caller`` dependencies (api/auth.py),
   which add the rate limits and who may touch which mailbox.
2. The body limit: 55 MB for the fax-sending routes (``POST …/extension/{id}/fax``
   and the console's ``POST /console/send/fax``),
   1 MB for everything else; a declared Content-Length over it is 413 (CMN-104) at
   once, a body that grows past it while read is cut off the same way. Either way the
   connection is closed, so the rest is never read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from gatewayd.api.auth import USER_STATE, Authenticator
from gatewayd.api.errors import ApiError, ErrorCode, error_body

BODY_LIMIT = 1_000_000  # JSON bodies
FAX_BODY_LIMIT = 55 * 1000 * 1000  # POST …/fax: documents in multipart
_FAX_ROUTE = re.compile(
    r"^(/restapi/v1\.0/account/[^/]+/extension/[^/]+/fax|/console/send/fax)$"
)  # the API's fax route and the console's fax form (which checks its session first)
PROTECTED = ("/restapi/", "/gatewayd/")  # the message store; the operators' routes


def body_limit(method: str, path: str) -> int:
    return FAX_BODY_LIMIT if method == "POST" and _FAX_ROUTE.match(path) else BODY_LIMIT


class Gate:
    def __init__(self, app: ASGIApp, auth: Callable[[], Authenticator]) -> None:
        self.app = app
        self.auth = auth  # the daemon's Authenticator of now (SIGHUP replaces its users)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if scope["path"].startswith(PROTECTED):
            try:
                user = await self.auth().user_for_header(
                    headers.get(b"authorization", b"").decode("latin-1")
                )
            except ApiError as exc:
                await _answer(send, exc.status, exc.body(), exc.headers)
                return
            scope.setdefault("state", {})[USER_STATE] = user
        limit = body_limit(scope["method"], scope["path"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        seen, cut = 0, False

        async def counted() -> Any:
            """The body as it comes; past the limit, 413 is answered here and the
            application is told the client has gone."""
            nonlocal seen, cut
            if cut:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    cut = True
                    await _too_large(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def unless_cut(message: Any) -> None:
            if not cut:
                await send(message)

        await self.app(scope, counted, unless_cut)


async def _too_large(send: Send, limit: int) -> None:
    body = error_body(ErrorCode.TOO_LARGE, f"The request body is larger than {limit} bytes")
    await _answer(send, 413, body)


async def _answer(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    """An error answer, and the connection closed after it: what the client still
    sends is not read."""
    data = json.dumps(body).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(data)),
        (b"connection", b"close"),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})
