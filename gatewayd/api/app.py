"""The HTTP API: a FastAPI app over the mailbox, served by uvicorn in the daemon's loop.

``create_app`` builds the app from the parts the daemon made (``Context``, and the
``Metrics`` it serves at /metrics); ``ApiServer`` serves it on ``[api] listen`` (TLS
when ``tls_cert`` and ``tls_key`` are set) and stops it within the daemon's grace. In
front of the app it puts the short way for ``POST …/sms`` (sms_route.py), and each
connection writes what one turn of the event loop answered in one system call (an
answer's head and body are two writes in uvicorn; one is enough).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gatewayd import __version__
from gatewayd.api import send, store
from gatewayd.api.auth import Authenticator
from gatewayd.api.deps import Context
from gatewayd.api.errors import ErrorCode, FastJSON, error_body, install
from gatewayd.api.models import ERRORS
from gatewayd.api.sms_route import SmsRoute
from gatewayd.config.settings import Settings
from gatewayd.logging import get_logger
from gatewayd.metrics import Metrics

log = get_logger("gatewayd.api")

BODY_LIMIT = 1_000_000  # JSON bodies
FAX_BODY_LIMIT = send.FAX_BODY_LIMIT


class BodyLimit:
    """413 for a request whose Content-Length says it is too large, before reading it;
    a body that grows past the limit while being read is cut off the same way."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send_: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send_)
            return
        limit = FAX_BODY_LIMIT if scope["path"].endswith("/fax") else BODY_LIMIT
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(send_, limit)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send_)
        except _TooLarge:
            await _too_large(send_, limit)


class _TooLarge(Exception):
    pass


async def _too_large(send_: Send, limit: int) -> None:
    body = json.dumps(
        error_body(ErrorCode.TOO_LARGE, f"The request body is larger than {limit} bytes")
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send_({"type": "http.response.start", "status": 413, "headers": headers})
    await send_({"type": "http.response.body", "body": body})


async def prometheus(request: Request) -> Response:
    """Prometheus text format; no token (the API listens on loopback by default)."""
    metrics: Metrics = request.app.state.metrics
    return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)


def create_app(context: Context, metrics: Metrics | None = None) -> FastAPI:
    app = FastAPI(
        default_response_class=FastJSON,
        title="gatewayd message store",
        version=__version__,
        description="The RingCentral-style message store of gatewayd (docs/api.md).",
        docs_url=None,
        redoc_url=None,
        responses=ERRORS,  # type: ignore[arg-type]
    )
    install(app)
    app.state.context = context
    app.state.metrics = metrics or Metrics()
    app.include_router(store.router)
    app.include_router(send.router)
    app.add_api_route("/metrics", prometheus, methods=["GET"], include_in_schema=False)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)  # we answer 400
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyLimit)
    return app


class _CoalescingTransport:
    """A connection's transport that writes what one turn of the event loop wrote in
    one system call; closing writes what is waiting first. Everything else is the
    transport's own."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._waiting: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self._flush)
        self._waiting.append(bytes(data))

    def _flush(self) -> None:
        if self._waiting:
            data = b"".join(self._waiting)
            self._waiting.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a _CoalescingTransport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(_CoalescingTransport(transport))  # type: ignore[arg-type]


class _EmbeddedServer(uvicorn.Server):
    """uvicorn leaves signals to the daemon (its own handlers would take SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    def __init__(self, app: FastAPI, settings: Settings) -> None:
        api = settings.api
        self.host, self.port = api.listen.host, api.listen.port
        context: Context = app.state.context
        config = uvicorn.Config(
            SmsRoute(app, context),
            host=self.host,
            port=self.port,
            lifespan="off",
            log_config=None,
            http=_HttpProtocol,
            access_log=False,
            server_header=False,
            proxy_headers=False,
            ssl_certfile=str(api.tls_cert) if api.tls_cert else None,
            ssl_keyfile=str(api.tls_key) if api.tls_key else None,
        )
        self.server = _EmbeddedServer(config)
        self.auth: Authenticator = context.auth
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen (an address in use is an OSError here, not uvicorn's exit)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets; without it each
        # keep-alive answer waits for the peer's delayed ACK (~40 ms).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"API: cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]), name="api")
        while not self.server.started:
            if self._task.done():
                try:
                    self._task.result()
                except SystemExit as exc:
                    raise OSError(f"API: uvicorn did not start (exit {exc.code})") from None
                raise OSError("API: uvicorn did not start")
            await asyncio.sleep(0.01)
        log.info(
            "api.listening",
            address=f"{self.host}:{self.port}",
            tls=self.server.config.ssl_certfile is not None,
        )

    async def stop(self, grace: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self.server.should_exit = True
        done, _ = await asyncio.wait({task}, timeout=grace)
        if not done:
            self.server.force_exit = True
            for connection in list(self.server.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.abort()
            for request in list(self.server.server_state.tasks):
                request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
