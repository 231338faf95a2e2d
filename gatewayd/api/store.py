"""The message store: list, read (one or many), content, update, delete, restore, sync."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import mimetypes
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response

from gatewayd.api.auth import Authenticator, Caller
from gatewayd.api.errors import ApiError, FastJSON, error_body, invalid, not_found
from gatewayd.api.models import (
    ERRORS,
    BulkItem,
    MessageInfo,
    MessageList,
    PatchBody,
    ReadStatusBody,
    SyncResult,
)
from gatewayd.api.params import MAX_CONVERSATION, message_id, when
from gatewayd.errors import MessageNotFound
from gatewayd.mailbox import Mailbox, Message, MessageQuery
from gatewayd.mailbox.queries import MAX_PER_PAGE
from gatewayd.mailbox.records import iso
from gatewayd.mailbox.rows import load_messages, select_messages
from gatewayd.mailbox.schema import messages
from gatewayd.model import (
    Availability,
    AvailabilityAction,
    Direction,
    MessageType,
    ReadStatus,
)

PREFIX = "/restapi/v1.0/account/{accountId}/extension/{extensionId}"
BULK_MAX = 50
BULK_TYPE = "application/vnd.ringcentral.multipart+json"
SYNC_OVERLAP = timedelta(seconds=5)
SYNC_DEFAULT_WINDOW = timedelta(hours=24)
SYNC_DEFAULT_COUNT = 250
SYNC_MAX_COUNT = 1000

Time = Annotated[str | None, Query(max_length=40, json_schema_extra={"format": "date-time"})]
DeleteType = Literal["Fax", "SMS", "VoiceMail", "Pager", "Text", "All"]


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def router(mailbox: Mailbox, auth: Authenticator) -> APIRouter:
    api = APIRouter(prefix=PREFIX, responses=ERRORS)  # type: ignore[arg-type]

    def caller(request: Request, response: Response, account: str, extension: str,
               group: str, *, write: bool = False) -> Caller:  # fmt: skip
        return auth.caller(request, response, account, extension, group, write=write)

    async def own_message(who: Caller, raw_id: str) -> Message:
        return await mailbox.get(message_id(raw_id), extension_id=who.extension_id)

    # -- list ---------------------------------------------------------------------------

    @api.get("/message-store", response_model=MessageList, operation_id="listMessages")
    async def list_messages(
        request: Request,
        response: Response,
        accountId: str,
        extensionId: str,
        availability: Annotated[list[Availability] | None, Query()] = None,
        conversationId: Annotated[int | None, Query(ge=1, le=MAX_CONVERSATION)] = None,
        dateFrom: Time = None,
        dateTo: Time = None,
        direction: Annotated[list[Direction] | None, Query()] = None,
        distinctConversations: bool = False,
        messageType: Annotated[list[MessageType] | None, Query()] = None,
        readStatus: Annotated[list[ReadStatus] | None, Query()] = None,
        page: Annotated[int, Query(ge=1, le=10**9)] = 1,
        perPage: Annotated[int, Query(ge=1, le=10**9)] = 100,
        phoneNumber: Annotated[str | None, Query(max_length=32)] = None,
    ) -> FastJSON:
        who = caller(request, response, accountId, extensionId, "Light")
        date_from, date_to = when("dateFrom", dateFrom), when("dateTo", dateTo)
        if date_from and date_to and date_from > date_to:
            raise invalid("dateFrom", dateFrom, "dateFrom is after dateTo.")
        query = MessageQuery(
            extension_id=who.extension_id,
            availability=tuple(availability or (Availability.ALIVE,)),
            conversation_id=conversationId,
            date_from=date_from,
            date_to=date_to,
            direction=tuple(direction or ()),
            distinct_conversations=distinctConversations,
            message_type=tuple(messageType or ()),
            read_status=tuple(readStatus or ()),
            phone_number=phoneNumber or None,
            page=page,
            per_page=min(perPage, MAX_PER_PAGE),
        )
        found = await mailbox.find(query)
        base = base_url(request)
        path = f"{base}{request.url.path}"
        canonical: dict[str, Any] = {
            "availability": [a.value for a in query.availability],
            "dateFrom": iso(found.date_from),
            "dateTo": iso(found.date_to),
            "page": found.page,
            "perPage": found.per_page,
        }
        for key, values in (
            ("direction", query.direction),
            ("messageType", query.message_type),
            ("readStatus", query.read_status),
        ):
            if values:
                canonical[key] = [v.value for v in values]
        if conversationId is not None:
            canonical["conversationId"] = conversationId
        if distinctConversations:
            canonical["distinctConversations"] = "true"
        if phoneNumber:
            canonical["phoneNumber"] = phoneNumber

        def at(number: int) -> dict[str, str]:
            return {"uri": f"{path}?{urlencode({**canonical, 'page': number}, doseq=True)}"}

        navigation: dict[str, Any] = {}
        if found.total_pages:
            navigation["firstPage"] = at(1)
            navigation["lastPage"] = at(found.total_pages)
            if found.page < found.total_pages:
                navigation["nextPage"] = at(found.page + 1)
            if 1 < found.page <= found.total_pages + 1:
                navigation["previousPage"] = at(found.page - 1)
        body = {
            "uri": at(found.page)["uri"],
            "records": [m.to_json(base) for m in found.records],
            "paging": found.paging(),
            "navigation": navigation,
        }
        return FastJSON(body, headers=dict(response.headers))

    # -- read ---------------------------------------------------------------------------

    @api.get(
        "/message-store/{messageId}", response_model=MessageInfo, operation_id="readMessage",
        responses={207: {"model": list[BulkItem], "content": {BULK_TYPE: {}},
                         "description": "Several ids (a comma list): one entry each"}},
    )  # fmt: skip
    async def read_message(
        request: Request,
        response: Response,
        accountId: str,
        extensionId: str,
        messageId: str,
    ) -> Response:
        who = caller(request, response, accountId, extensionId, "Light")
        base = base_url(request)
        ids = messageId.split(",")
        if len(ids) == 1:
            message = await own_message(who, messageId)
            return FastJSON(message.to_json(base), headers=dict(response.headers))
        if len(ids) > BULK_MAX:
            raise ApiError(400, "CMN-106", f"At most {BULK_MAX} ids in one request",
                           parameter="messageId")  # fmt: skip
        items = []
        for raw in ids:
            try:
                found = await own_message(who, raw)
            except (ApiError, MessageNotFound):
                error = not_found("messageId", raw)
                items.append({"resourceId": raw, "status": 404, "body": error.body()})
            else:
                items.append({"resourceId": raw, "status": 200, "body": found.to_json(base)})
        return Response(orjson.dumps(items), status_code=207, media_type=BULK_TYPE,
                        headers=dict(response.headers))  # fmt: skip

    @api.get(
        "/message-store/{messageId}/content/{attachmentId}",
        operation_id="readMessageContent",
        response_class=Response,
        responses={
            200: {"content": {"application/octet-stream": {}}, "description": "The content"},
            206: {"content": {"application/octet-stream": {}}, "description": "A byte range"},
            416: {"model": ERRORS[400]["model"], "description": "Range not satisfiable (CMN-107)"},
        },
    )
    async def read_content(
        request: Request, response: Response, accountId: str, extensionId: str,
        messageId: str, attachmentId: str,
        contentDisposition: Literal["Inline", "Attachment"] = "Inline",
    ) -> Response:  # fmt: skip
        who = caller(request, response, accountId, extensionId, "Light")
        try:
            item, content = await mailbox.attachment(
                message_id(messageId), message_id(attachmentId, "attachmentId"),
                extension_id=who.extension_id,
            )  # fmt: skip
        except MessageNotFound as exc:
            raise not_found("attachmentId" if exc.what == "attachment" else "messageId") from None
        data = content if isinstance(content, bytes) else await _read(content)
        extension = mimetypes.guess_extension(item.content_type.split(";")[0]) or ".bin"
        headers = {
            **response.headers,
            "Content-Disposition": f"{contentDisposition.lower()};filename={item.id}{extension}",
            "Accept-Ranges": "bytes",
        }
        wanted = request.headers.get("range")
        if wanted is None:
            return Response(data, media_type=item.content_type, headers=headers)
        span = _range(wanted, len(data))
        if span is None:
            return FastJSON(
                error_body("CMN-107", "Requested range not satisfiable", "Range"),
                status_code=416, headers={**headers, "Content-Range": f"bytes */{len(data)}"},
            )  # fmt: skip
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Response(data[start : end + 1], status_code=206, media_type=item.content_type,
                        headers=headers)  # fmt: skip

    # -- change -------------------------------------------------------------------------

    @api.put("/message-store/{messageId}", response_model=MessageInfo,
             operation_id="updateMessage")  # fmt: skip
    async def update_message(
        request: Request, response: Response, accountId: str, extensionId: str,
        messageId: str, body: ReadStatusBody,
    ) -> FastJSON:  # fmt: skip
        who = caller(request, response, accountId, extensionId, "Medium", write=True)
        message = await mailbox.set_read_status(
            message_id(messageId), body.readStatus, extension_id=who.extension_id
        )
        return FastJSON(message.to_json(base_url(request)), headers=dict(response.headers))

    @api.patch("/message-store/{messageId}", response_model=MessageInfo,
               operation_id="patchMessage")  # fmt: skip
    async def patch_message(
        request: Request, response: Response, accountId: str, extensionId: str,
        messageId: str, body: PatchBody,
    ) -> FastJSON:  # fmt: skip
        who = caller(request, response, accountId, extensionId, "Medium", write=True)
        if body.readStatus is None and body.availability is None:
            raise invalid("readStatus", None, "Give readStatus, availability or both.")
        target = message_id(messageId)
        message = await mailbox.get(target, extension_id=who.extension_id)
        if body.availability is not None and message.availability is not Availability.ALIVE:
            if message.availability is Availability.PURGED:
                raise invalid("availability", "Alive", "A Purged message cannot be restored.")
            message = await mailbox.change_availability(
                target, AvailabilityAction.RESTORE, reason="restored through the API",
                extension_id=who.extension_id,
            )  # fmt: skip
        if body.readStatus is not None:
            message = await mailbox.set_read_status(
                target, body.readStatus, extension_id=who.extension_id
            )
        return FastJSON(message.to_json(base_url(request)), headers=dict(response.headers))

    @api.delete("/message-store/{messageId}", status_code=204, response_class=Response,
                operation_id="deleteMessage")  # fmt: skip
    async def delete_message(
        request: Request, response: Response, accountId: str, extensionId: str,
        messageId: str, purge: bool = False,
    ) -> Response:  # fmt: skip
        who = caller(request, response, accountId, extensionId, "Medium", write=True)
        target = message_id(messageId)
        message = await mailbox.get(target, extension_id=who.extension_id)
        if message.availability is not Availability.PURGED:
            await mailbox.change_availability(
                target, AvailabilityAction.PURGE if purge else AvailabilityAction.DELETE,
                reason="deleted through the API", extension_id=who.extension_id,
            )  # fmt: skip
        return Response(status_code=204, headers=dict(response.headers))

    @api.delete("/message-store", status_code=204, response_class=Response,
                operation_id="deleteMessageByFilter")  # fmt: skip
    async def delete_by_filter(
        request: Request,
        response: Response,
        accountId: str,
        extensionId: str,
        conversationId: Annotated[list[int] | None, Query(max_length=50)] = None,
        type: Annotated[DeleteType | None, Query()] = None,
        dateTo: Time = None,
    ) -> Response:
        who = caller(request, response, accountId, extensionId, "Medium", write=True)
        if conversationId and type is not None:
            raise ApiError(400, "MSG-390", "Give conversationId or type, not both",
                           parameter="type")  # fmt: skip
        if conversationId and any(c < 1 or c > MAX_CONVERSATION for c in conversationId):
            raise invalid("conversationId", conversationId)
        until = when("dateTo", dateTo) or mailbox.clock.now()
        kinds = () if type in (None, "All") else (MessageType(type),)
        conversations: list[int | None] = [*conversationId] if conversationId else [None]
        for conversation in conversations:
            while True:  # deleted messages leave the Alive set: page 1 again until done
                found = await mailbox.find(MessageQuery(
                    extension_id=who.extension_id, conversation_id=conversation,
                    message_type=kinds, date_from=datetime(1970, 1, 1, tzinfo=until.tzinfo),
                    date_to=until, per_page=MAX_PER_PAGE,
                ))  # fmt: skip
                for message in found.records:
                    await mailbox.change_availability(
                        message.id, AvailabilityAction.DELETE, reason="deleted through the API",
                        extension_id=who.extension_id,
                    )  # fmt: skip
                if len(found.records) < MAX_PER_PAGE:
                    break
        return Response(status_code=204, headers=dict(response.headers))

    # -- sync ---------------------------------------------------------------------------

    @api.get("/message-sync", response_model=SyncResult, operation_id="syncMessages")
    async def sync(
        request: Request, response: Response, accountId: str, extensionId: str,
        syncType: Literal["FSync", "ISync"],
        syncToken: Annotated[str | None, Query(max_length=2000)] = None,
        messageType: Annotated[list[MessageType] | None, Query()] = None,
        direction: Annotated[list[Direction] | None, Query()] = None,
        conversationId: Annotated[int | None, Query(ge=1, le=MAX_CONVERSATION)] = None,
        dateFrom: Time = None,
        dateTo: Time = None,
        recordCount: Annotated[int | None, Query(ge=1, le=10**6)] = None,
    ) -> FastJSON:  # fmt: skip
        who = caller(request, response, accountId, extensionId, "Light")
        now = mailbox.clock.now()
        count = min(recordCount or SYNC_DEFAULT_COUNT, SYNC_MAX_COUNT)
        filters: dict[str, Any] = {
            "messageType": sorted(t.value for t in messageType or ()),
            "direction": sorted(d.value for d in direction or ()),
            "conversationId": conversationId,
        }
        base = base_url(request)
        async with mailbox.db.read() as conn:
            query = select_messages(conn).where(messages.c.extension_id == who.extension_id)
            if syncType == "ISync":
                if not syncToken:
                    raise _full_sync_required()
                since, saved = _read_token(syncToken)
                filters = saved
                changed = since - SYNC_OVERLAP
                query = query.where(
                    sa.or_(
                        messages.c.last_modified_time >= changed,
                        messages.c.availability_changed_at >= changed,
                    )
                )
                order: list[Any] = [messages.c.last_modified_time, messages.c.id]
            else:
                date_to = when("dateTo", dateTo) or now
                date_from = when("dateFrom", dateFrom) or date_to - SYNC_DEFAULT_WINDOW
                query = query.where(
                    messages.c.creation_time >= date_from, messages.c.creation_time <= date_to,
                    messages.c.availability == Availability.ALIVE.value,
                )  # fmt: skip
                order = [messages.c.creation_time.desc(), messages.c.id.desc()]
            if filters["messageType"]:
                query = query.where(messages.c.type.in_(filters["messageType"]))
            if filters["direction"]:
                query = query.where(messages.c.direction.in_(filters["direction"]))
            if filters["conversationId"] is not None:
                query = query.where(messages.c.conversation_id == filters["conversationId"])
            found = await load_messages(conn, query.order_by(*order).limit(count + 1))
        older = len(found) > count
        found = found[:count]
        records = [
            m.to_json(base) if m.availability is Availability.ALIVE
            else {"id": m.id, "availability": m.availability.value}
            for m in found
        ]  # fmt: skip
        body = {
            "uri": str(request.url),
            "records": records,
            "syncInfo": {
                "syncType": syncType,
                "syncToken": _token(now, filters),
                "syncTime": iso(now),
                "olderRecordsExist": older,
            },
        }
        return FastJSON(body, headers=dict(response.headers))

    return api


def _token(at: datetime, filters: dict[str, Any]) -> str:
    raw = json.dumps({"v": 1, "t": at.isoformat(), "f": filters}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _full_sync_required() -> ApiError:
    return ApiError(400, "MSG-333", "The sync token is invalid: full synchronization is required",
                    parameter="syncToken")  # fmt: skip


def _read_token(token: str) -> tuple[datetime, dict[str, Any]]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
        at = datetime.fromisoformat(value["t"])
        filters = value["f"]
        if value.get("v") != 1 or at.tzinfo is None or not isinstance(filters, dict):
            raise ValueError("not a token")
        types = [MessageType(t).value for t in filters.get("messageType", [])]
        directions = [Direction(d).value for d in filters.get("direction", [])]
        conversation = filters.get("conversationId")
        if conversation is not None and not isinstance(conversation, int):
            raise ValueError("not a token")
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise _full_sync_required() from None
    return at, {"messageType": types, "direction": directions, "conversationId": conversation}


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _range(header: str, size: int) -> tuple[int, int] | None:
    """The one byte range a Range header asks for, clipped; None if unsatisfiable (or
    not one range)."""
    match = _RANGE.match(header.strip())
    if not match or size == 0 or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # the last N bytes
        length = int(last)
        return (max(0, size - length), size - 1) if length else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return start, end


async def _read(path: Path) -> bytes:
    return await asyncio.to_thread(path.read_bytes)
