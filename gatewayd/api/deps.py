"""What every API handler is given: the daemon's parts (``Context``) and the caller.

The app keeps one ``Context`` in ``app.state.context``; handlers at module level take
it, and the authenticated ``Caller`` for their rate-limit group, as FastAPI
dependencies (``Depends``), so nothing is a closure over the daemon's objects.
``PREFIX`` is where every extension's resources live; ``base_url`` what their ``uri``s
start with.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request, Response

from gatewayd.api.auth import Authenticator, Caller
from gatewayd.config.settings import Settings
from gatewayd.mailbox import Mailbox, Message

PREFIX = "/restapi/v1.0/account/{accountId}/extension/{extensionId}"


def base_url(request: Request) -> str:
    """The scheme, host and port the client called, for the links in a body."""
    return str(request.base_url).rstrip("/")


def _nothing(_messages: Sequence[Message]) -> None:
    return None


@dataclass(slots=True)
class Context:
    """The parts the API works with, built by the daemon (or a test)."""

    mailbox: Mailbox
    auth: Authenticator
    office: bool = False
    # Called with new Queued messages once committed (the daemon wakes its dispatchers).
    on_queued: Callable[[Sequence[Message]], None] = field(default=_nothing)

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
MediumWriter = Annotated[Caller, Depends(_caller("Medium", write=True))]
HeavyWriter = Annotated[Caller, Depends(_caller("Heavy", write=True))]
