"""The dashboard (administrators): the page, its live part (refreshed by htmx every
``refresh_interval``) and the chart data (JSON, drawn by uPlot in console.js)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from gatewayd.console.live import RANGES, Dashboard
from gatewayd.console.web import Refused, current


def dashboard_of(request: Request) -> Dashboard:
    found: Dashboard = request.app.state.dashboard
    return found


async def _live_values(request: Request) -> dict[str, Any]:
    console = current(request)
    viewer = await console.admin(request)
    board = dashboard_of(request)
    account = viewer.user.account_id
    return {
        "links": board.links(console.settings),
        "fax": board.fax(),
        "queue": await board.queue(),
        "failures": await board.failures(account),
        "latest": await board.latest(account),
        "now": console.mailbox.clock.now(),
    }


async def page(request: Request) -> Response:
    console = current(request)
    values = await _live_values(request)
    return console.page("dashboard.html", request, ranges=list(RANGES), **values)


async def live(request: Request) -> Response:
    console = current(request)
    values = await _live_values(request)
    return console.page("_live.html", request, **values)


async def series(request: Request) -> Response:
    console = current(request)
    viewer = await console.admin(request)
    name = request.query_params.get("range", "hour")
    if name not in RANGES:
        raise Refused(404, "Not found")
    data = await dashboard_of(request).series(name, viewer.user.account_id)
    return JSONResponse(data, headers={"Cache-Control": "no-store"})
