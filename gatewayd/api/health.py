"""The daemon's own endpoints beside the message store, outside the OpenAPI document:

- ``GET /healthz``: liveness; 200 whenever the daemon's event loop answers.
- ``GET /readyz``: readiness; 200 when the mailbox answers, the listeners are up (and
  not draining) and, when SMS links are configured, at least one is bound; else 503.
  The body names the checks and whether each passed (no details: anyone who reaches
  the port may ask; ``gatewayd status`` has the details).
- ``GET /metrics``: Prometheus's text format (gatewayd/metrics.py). With ``[api]
  metrics_token_hash`` set it wants ``Authorization: Bearer <token>`` (the hash made by
  ``gatewayd hash-secret --token``); without, it is open (the API listens on loopback
  by default).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gatewayd import credentials
from gatewayd.api.deps import Ctx
from gatewayd.api.errors import ApiError, ErrorCode, FastJSON
from gatewayd.errors import StoreError
from gatewayd.metrics import Metrics
from gatewayd.status import Check

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> FastJSON:
    return FastJSON({"status": "ok"}, headers={"Cache-Control": "no-store"})


@router.get("/readyz")
async def readyz(ctx: Ctx) -> FastJSON:
    if ctx.status is not None:
        checks = await ctx.status.readiness()
    else:
        try:
            await ctx.mailbox.ping()
            checks = [Check("mailbox", True, "")]
        except StoreError as exc:
            checks = [Check("mailbox", False, str(exc))]
    ready = all(check.ok for check in checks)
    body = {"ready": ready, "checks": [{"name": c.name, "ok": c.ok} for c in checks]}
    return FastJSON(body, status_code=200 if ready else 503, headers={"Cache-Control": "no-store"})


@router.get("/metrics")
async def prometheus(request: Request, ctx: Ctx) -> Response:
    wanted = ctx.settings.api.metrics_token_hash
    if wanted:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.verify(token.strip(), wanted):
            raise ApiError(
                401,
                ErrorCode.INVALID_TOKEN,
                "/metrics needs Authorization: Bearer <the metrics token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
    metrics: Metrics = request.app.state.metrics
    return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)
