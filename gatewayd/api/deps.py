"""What every API handler is given: the daemon's parts (``Context``) and the caller.

The app keeps one ``Context`` in ``app.state.context``; handlers at module level take
it, and the authenticated ``Caller`` for their rate-limit group, as FastAPI
dependencies (``Depends``), so nothing is a closure over the daemon's objects.
``PREFIX`` is where every extension's resources live; ``base_url`` what their ``uri``s
start with: ``[api] public_url``, else the listen address; never the Host header,
which the client chooses.

``LiveView`` is what the daemon's running parts say of themselves now (the SMPP links,
the fax carrier), read-only, for the web console's dashboard; the daemon builds it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Protocol

from fastapi import Depends, Request, Response

from gatewayd.api.auth import Authenticator, Caller
from gatewayd.config.settings import Settings
from gatewayd.mailbox import Mailbox, Message
from gatewayd.metrics import LinkView
from gatewayd.render.job import Renderer
from gatewayd.status import Observer

PREFIX = "/restapi/v1.0/account/{accountId}/extension/{extensionId}"


def base_url(request: Request) -> str:
    """Where clients reach the API, for the links in a body."""
    return public_url(context(request).settings)


def public_url(settings: Settings) -> str:
    api = settings.api
    if api.public_url:
        return api.public_url
    scheme = "https" if api.tls_cert is not None else "http"
    return f"{scheme}://{api.listen}"


def _nothing(_messages: Sequence[Message]) -> None:
    return None


class FaxCarrierView(Protocol):
    """What the fax dispatcher says of its carrier."""

    @property
    def name(self) -> str: ...

    @property
    def problem(self) -> str | None:
        """Why the carrier cannot be used now (unreachable, refusing us); None: fine."""
        ...

    @property
    def jobs(self) -> int:
        """Faxes this node has at the carrier or is handing over."""
        ...


class LiveView(Protocol):
    """The daemon's running parts, as they are now."""

    @property
    def links(self) -> Sequence[LinkView]: ...

    @property
    def fax(self) -> FaxCarrierView | None: ...


@dataclass(slots=True)
class Context:
    """The parts the API works with, built by the daemon (or a test)."""

    mailbox: Mailbox
    auth: Authenticator
    office: bool = False
    # Called with new Queued messages once committed (the daemon wakes its dispatchers).
    on_queued: Callable[[Sequence[Message]], None] = field(default=_nothing)
    # The running parts (None: none, as in a test of the API alone).
    live: LiveView | None = None
    # The fax render pool (the console's previews); None: no previews.
    renderer: Renderer | None = None
    # The daemon's view of itself (/readyz, the admin status); None: only the mailbox.
    status: Observer | None = None

    @property
    def settings(self) -> Settings:
        return self.auth.settings


def context(request: Request) -> Context:
    found: Context = request.app.state.context
    return found


async def _context(request: Request) -> Context:
    """``context`` as a dependency: async, so that FastAPI calls it in the loop
    (a plain function dependency is run in its thread pool: a thread hop a request)."""
    return context(request)


def _caller(
    group: str, *, write: bool
) -> Callable[[Request, Response, str, str], Awaitable[Caller]]:
    async def dependency(
        request: Request, response: Response, accountId: str, extensionId: str
    ) -> Caller:
        auth = context(request).auth
        return await auth.caller(request, response, accountId, extensionId, group, write=write)

    return dependency


Ctx = Annotated[Context, Depends(_context)]
LightReader = Annotated[Caller, Depends(_caller("Light", write=False))]
MEDIUM = "Medium"  # POST …/sms's rate-limit group (api/sms_route.py's too)
MediumWriter = Annotated[Caller, Depends(_caller(MEDIUM, write=True))]
HeavyWriter = Annotated[Caller, Depends(_caller("Heavy", write=True))]
