"""Operator actions over HTTP, for users with ``api_admin = true``, under ``/gatewayd/v1``
(gatewayd's own paths: they are not RingCentral's, whose message store sits under
``/restapi/v1.0``). What ``gatewayd status`` and ``gatewayd messages cancel|retry|
delete|restore`` do, on any message of the admin's account:

- ``GET /gatewayd/v1/status``: the status document (gatewayd/status.py).
- ``POST /gatewayd/v1/messages/{messageId}/cancel``: a Queued outbound SMS or fax
  becomes SendingFailed, "cancelled: <reason>" (a fax at its carrier is taken back).
- ``POST /gatewayd/v1/messages/{messageId}/retry``: a failed outbound SMS or fax is
  sent again as a new message (201, the new message, ``Location`` its admin path).
- ``DELETE /gatewayd/v1/messages/{messageId}`` (``purge=true``: at once to Purged) and
  ``POST /gatewayd/v1/messages/{messageId}/restore``.

Answers are the message as the message store shapes it, with a ``gatewayd`` block
(attempts, next attempt, carrier and its reference, failure reason). A user without
``api_admin`` gets 403 CMN-408; another account's message is 404 CMN-102; a change the
status machine refuses is 400 CMN-101 naming ``messageStatus`` or ``availability``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from gatewayd.api.deps import Ctx, base_url, context
from gatewayd.api.errors import ApiError, ErrorCode, FastJSON, not_found
from gatewayd.api.models import ERRORS, MessageInfo, Shape
from gatewayd.api.params import message_id
from gatewayd.config.settings import User
from gatewayd.mailbox import Message
from gatewayd.model import AvailabilityAction
from gatewayd.status import offline_snapshot

PREFIX = "/gatewayd/v1"

router = APIRouter(prefix=PREFIX, tags=["gatewayd operators"], responses=ERRORS)  # type: ignore[arg-type]


class ActionBody(BaseModel):
    """Why (kept in the message's event and, for a cancel, in its failure reason)."""

    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, min_length=1, max_length=500)


class StatusDocument(Shape):
    """gatewayd's status: see docs/operations.md for every field."""

    version: str
    source: str
    ready: bool


class OperatorMessage(MessageInfo):
    gatewayd: dict[str, Any]


async def _admin(request: Request, response: Response, group: str) -> User:
    auth = context(request).auth
    user = await auth.user_for(request)
    await auth.limiter.check(user, group, response)
    if not user.api_admin:
        raise ApiError(
            403,
            ErrorCode.NO_PERMISSION,
            "Operator actions need the token of a user with api_admin = true",
        )
    return user


async def _reader(request: Request, response: Response) -> User:
    return await _admin(request, response, "Light")


async def _actor(request: Request, response: Response) -> User:
    return await _admin(request, response, "Medium")


Reader = Annotated[User, Depends(_reader)]
Actor = Annotated[User, Depends(_actor)]
Reason = Annotated[ActionBody | None, Body()]


async def _message(ctx: Ctx, user: User, raw_id: str) -> Message:
    found = await ctx.mailbox.get(message_id(raw_id))
    if found.account_id != user.account_id:
        raise not_found("messageId", raw_id)
    return found


def _answer(
    request: Request, response: Response, message: Message, status_code: int = 200
) -> FastJSON:
    headers = dict(response.headers)
    if status_code == 201:
        headers["Location"] = f"{base_url(request)}{PREFIX}/messages/{message.id}"
    return FastJSON(
        message.to_json(base_url(request), internal=True),
        status_code=status_code,
        headers=headers,
    )


def _why(body: ActionBody | None, user: User, default: str) -> str:
    who = user.emails[0] if user.emails else f"extension {user.extension_id}"
    return f"{body.reason if body and body.reason else default} ({who}, API)"


@router.get("/status", response_model=StatusDocument, operation_id="getGatewayStatus")
async def status(response: Response, ctx: Ctx, user: Reader) -> FastJSON:
    if ctx.status is not None:
        document = await ctx.status.snapshot()
    else:
        document = await offline_snapshot(ctx.mailbox, ctx.settings, "no daemon behind this API")
    return FastJSON(document, headers=dict(response.headers))


@router.post(
    "/messages/{messageId}/cancel", response_model=OperatorMessage, operation_id="cancelMessage"
)
async def cancel(
    request: Request, response: Response, ctx: Ctx, user: Actor, messageId: str, body: Reason = None
) -> FastJSON:
    found = await _message(ctx, user, messageId)
    done = await ctx.mailbox.cancel(found.id, reason=_why(body, user, "by an operator"))
    return _answer(request, response, done)


@router.post(
    "/messages/{messageId}/retry",
    response_model=OperatorMessage,
    status_code=201,
    operation_id="retryMessage",
)
async def retry(
    request: Request, response: Response, ctx: Ctx, user: Actor, messageId: str, body: Reason = None
) -> FastJSON:
    found = await _message(ctx, user, messageId)
    new = await ctx.mailbox.retry(found.id, reason=_why(body, user, "asked by an operator"))
    ctx.on_queued([new])
    return _answer(request, response, new, 201)


@router.post(
    "/messages/{messageId}/restore",
    response_model=OperatorMessage,
    operation_id="restoreMessage",
)
async def restore(
    request: Request, response: Response, ctx: Ctx, user: Actor, messageId: str
) -> FastJSON:
    found = await _message(ctx, user, messageId)
    done = await ctx.mailbox.change_availability(
        found.id, AvailabilityAction.RESTORE, reason=_why(None, user, "restored")
    )
    return _answer(request, response, done)


@router.delete(
    "/messages/{messageId}", response_model=OperatorMessage, operation_id="operatorDeleteMessage"
)
async def delete(
    request: Request,
    response: Response,
    ctx: Ctx,
    user: Actor,
    messageId: str,
    purge: Annotated[bool, Query()] = False,
) -> FastJSON:
    found = await _message(ctx, user, messageId)
    action = AvailabilityAction.PURGE if purge else AvailabilityAction.DELETE
    done = await ctx.mailbox.change_availability(
        found.id, action, reason=_why(None, user, "purged" if purge else "deleted")
    )
    return _answer(request, response, done)
