"""The HTTP API: a FastAPI app over the mailbox, served by uvicorn in the daemon's loop.

``create_app`` builds the app from the parts the daemon made (``Context``, and the
``Metrics`` it serves at /metrics): the message store (store.py, send.py), the
operators' routes under /gatewayd/v1 (admin.py), /healthz, /readyz and /metrics
(health.py), behind the Gate (api/gate.py: the token before the body, the body
limits). The OpenAPI document declares the bearer token on every operation.
``ApiServer`` serves it on ``[api] listen`` (TLS when ``tls_cert`` and ``tls_key`` are
set): gatewayd.guard's accept loop with the connection caps (``api.max_connections``,
``api.max_connections_per_address``; 503 beyond them) hands each connection to
uvicorn's protocol with read timeouts (api/protocol.py), which writes what one turn of
the event loop answered in one system call and answers a plainly right ``POST …/sms``
itself, past the app (api/sms_route.py); it stops within the daemon's grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI

from gatewayd import __version__
from gatewayd.api import admin, health, send, store
from gatewayd.api.auth import Authenticator
from gatewayd.api.deps import Context
from gatewayd.api.errors import ErrorCode, FastJSON, error_body, install
from gatewayd.api.gate import BODY_LIMIT, FAX_BODY_LIMIT, Gate
from gatewayd.api.models import ERRORS
from gatewayd.api.protocol import GuardedHttp, ReadTimeouts
from gatewayd.api.sms_route import SmsRoute
from gatewayd.config.settings import Settings
from gatewayd.guard.listener import Acceptor, Caps, Slot, bind
from gatewayd.guard.tally import Tally
from gatewayd.logging import get_logger
from gatewayd.metrics import Metrics

log = get_logger("gatewayd.api")

__all__ = ["BODY_LIMIT", "FAX_BODY_LIMIT", "ApiServer", "create_app"]
BEARER = {
    "bearerToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token: `gatewayd token create --user EMAIL` (docs/api.md)",
    }
}


def _busy() -> bytes:
    body = json.dumps(
        error_body(ErrorCode.BUSY, "Too many connections; please try again later")
    ).encode()
    head = (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        b"retry-after: 10\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
    )
    return head + body


def create_app(context: Context, metrics: Metrics | None = None) -> FastAPI:
    app = FastAPI(
        default_response_class=FastJSON,
        title="gatewayd message store",
        version=__version__,
        description="The RingCentral-style message store of gatewayd (docs/api.md).",
        docs_url=None,
        redoc_url=None,
        responses=ERRORS,  # type: ignore[arg-type]
        # gatewayd exports no OpenTelemetry; left on, FastAPI asks the global tracer,
        # meter and logger providers (and the environment) on every request whether
        # anyone listens: ~4 % of the event loop under POST .../sms load.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install(app)
    app.state.context = context
    app.state.metrics = metrics or Metrics()
    app.include_router(store.router)
    app.include_router(send.router)
    app.include_router(admin.router)
    app.include_router(health.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            schema.setdefault("components", {})["securitySchemes"] = BEARER
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)  # we answer 400
                    operation["security"] = [{"bearerToken": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(Gate, auth=lambda: context.auth)  # the token, the body limits
    return app


class _EmbeddedServer(uvicorn.Server):
    """uvicorn leaves signals to the daemon (its own handlers would take SIGTERM)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    def __init__(self, app: FastAPI, settings: Settings, *, caps: Caps | None = None) -> None:
        api = settings.api
        self.host, self.port = api.listen.host, api.listen.port
        # The daemon may give lower caps when descriptors are short.
        self.caps = caps or Caps(api.max_connections, api.max_connections_per_address)
        self.timeouts = ReadTimeouts(api.header_timeout, api.body_timeout)
        context: Context = app.state.context
        config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            lifespan="off",
            log_config=None,
            http="httptools",  # the protocol is GuardedHttp, made in _connection
            access_log=False,
            server_header=False,
            proxy_headers=False,
            ssl_certfile=str(api.tls_cert) if api.tls_cert else None,
            ssl_keyfile=str(api.tls_key) if api.tls_key else None,
        )
        self.server = _EmbeddedServer(config)
        self.auth: Authenticator = context.auth
        self.short = SmsRoute(context)  # POST …/sms, answered by the connection itself
        self.acceptor: Acceptor | None = None
        self._task: asyncio.Task[None] | None = None
        self._timeouts_tally: Tally | None = None

    async def start(self) -> None:
        """Listen (an address in use is an OSError here, not uvicorn's exit). uvicorn
        runs without sockets of its own: its protocol is fed by our accept loop."""
        try:
            sockets = await asyncio.to_thread(bind, self.host, self.port)
        except OSError as exc:
            raise OSError(f"API: cannot listen on {self.host}:{self.port}: {exc}") from exc
        self.port = int(sockets[0].getsockname()[1])
        self._task = asyncio.create_task(self.server.serve(sockets=[]), name="api")
        while not self.server.started:
            if self._task.done():
                for sock in sockets:
                    sock.close()
                try:
                    self._task.result()
                except SystemExit as exc:
                    raise OSError(f"API: uvicorn did not start (exit {exc.code})") from None
                raise OSError("API: uvicorn did not start")
            await asyncio.sleep(0.01)
        config = self.server.config
        self._timeouts_tally = Tally("api.read_timeouts")
        self.acceptor = Acceptor(
            f"api {self.host}:{self.port}",
            sockets,
            self._connection,
            self.caps,
            refusals={"listener": _busy(), "address": _busy()},
            tls=config.ssl,
        )
        self.acceptor.start()
        log.info(
            "api.listening",
            address=f"{self.host}:{self.port}",
            tls=config.ssl_certfile is not None,
            max_connections=self.caps.per_listener,
            max_connections_per_address=self.caps.per_address,
        )

    def _connection(self, slot: Slot) -> asyncio.Protocol:
        tally = self._timeouts_tally
        return GuardedHttp(
            config=self.server.config,
            server_state=self.server.server_state,
            app_state=self.server.lifespan.state,
            timeouts=self.timeouts,
            slot=slot,
            on_timeout=tally.add if tally is not None else None,
            short=self.short,
        )

    async def stop(self, grace: float = 5.0) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        if self.acceptor is not None:
            self.acceptor.close()
        if self._timeouts_tally is not None:
            self._timeouts_tally.close()
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
