"""The message store: list, read (one or many), content, update, delete, restore, sync."""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from gatewayd.api.auth import Caller
from gatewayd.api.deps import PREFIX, Ctx, LightReader, MediumWriter, base_url
from gatewayd.api.errors import ApiError, ErrorCode, FastJSON, error_body, invalid, not_found
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
from gatewayd.mailbox import (
    MAX_PER_PAGE,
    JsonPage,
    Mailbox,
    Message,
    MessageQuery,
    SyncQuery,
    iso,
)
from gatewayd.model import (
    Availability,
    AvailabilityAction,
    Direction,
    MessageType,
    ReadStatus,
)

BULK_MAX = 50
BULK_TYPE = "application/vnd.ringcentral.multipart+json"
SYNC_OVERLAP = timedelta(seconds=5)
SYNC_DEFAULT_WINDOW = timedelta(hours=24)
SYNC_DEFAULT_COUNT = 250
SYNC_MAX_COUNT = 1000
TOKEN_OLDEST = datetime(2020, 1, 1, tzinfo=UTC)  # no sync token of gatewayd is older

Time = Annotated[str | None, Query(max_length=40, json_schema_extra={"format": "date-time"})]
DeleteType = Literal["Fax", "SMS", "VoiceMail", "Pager", "Text", "All"]

router = APIRouter(prefix=PREFIX, responses=ERRORS)  # type: ignore[arg-type]


def _headers(response: Response) -> dict[str, str]:
    """The headers the caller dependency set (rate limits), for a response we build."""
    return dict(response.headers)


async def _own_message(mailbox: Mailbox, who: Caller, raw_id: str) -> Message:
    return await mailbox.get(message_id(raw_id), extension_id=who.extension_id)


# -- list -------------------------------------------------------------------------------


@router.get("/message-store", response_model=MessageList, operation_id="listMessages")
async def list_messages(
    request: Request,
    response: Response,
    ctx: Ctx,
    who: LightReader,
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
    base = base_url(request)
    found = await ctx.mailbox.find_json(query, base)
    body = {
        **_page_links(f"{base}{request.url.path}", query, found),
        "records": orjson.Fragment(found.records),  # the database wrote them
        "paging": found.paging(),
    }
    return FastJSON(body, headers=_headers(response))


def _page_links(path: str, query: MessageQuery, found: JsonPage) -> dict[str, Any]:
    """``uri`` and ``navigation`` of a list page: canonical links with every filter."""
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
    if query.conversation_id is not None:
        canonical["conversationId"] = query.conversation_id
    if query.distinct_conversations:
        canonical["distinctConversations"] = "true"
    if query.phone_number:
        canonical["phoneNumber"] = query.phone_number

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
    return {"uri": at(found.page)["uri"], "navigation": navigation}


# -- read -------------------------------------------------------------------------------


@router.get(
    "/message-store/{messageId}",
    response_model=MessageInfo,
    operation_id="readMessage",
    responses={
        207: {
            "model": list[BulkItem],
            "content": {BULK_TYPE: {}},
            "description": "Several ids (a comma list): one entry each",
        }
    },
)
async def read_message(
    request: Request, response: Response, ctx: Ctx, who: LightReader, messageId: str
) -> Response:
    base = base_url(request)
    ids = messageId.split(",")
    if len(ids) == 1:
        message = await _own_message(ctx.mailbox, who, messageId)
        return FastJSON(message.to_json(base), headers=_headers(response))
    if len(ids) > BULK_MAX:
        raise ApiError(
            400,
            ErrorCode.TOO_MANY_IDS,
            f"At most {BULK_MAX} ids in one request",
            parameter="messageId",
        )
    items = []
    for raw in ids:
        try:
            found = await _own_message(ctx.mailbox, who, raw)
        except (ApiError, MessageNotFound):
            error = not_found("messageId", raw)
            items.append({"resourceId": raw, "status": 404, "body": error.body()})
        else:
            items.append({"resourceId": raw, "status": 200, "body": found.to_json(base)})
    return Response(
        orjson.dumps(items), status_code=207, media_type=BULK_TYPE, headers=_headers(response)
    )


@router.get(
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
    request: Request,
    response: Response,
    ctx: Ctx,
    who: LightReader,
    messageId: str,
    attachmentId: str,
    contentDisposition: Literal["Inline", "Attachment"] = "Inline",
) -> Response:
    try:
        item, content = await ctx.mailbox.attachment(
            message_id(messageId),
            message_id(attachmentId, "attachmentId"),
            extension_id=who.extension_id,
        )
    except MessageNotFound as exc:
        raise not_found("attachmentId" if exc.what == "attachment" else "messageId") from None
    extension = mimetypes.guess_extension(item.content_type.split(";")[0]) or ".bin"
    headers = {
        **_headers(response),
        "Content-Disposition": f"{contentDisposition.lower()};filename={item.id}{extension}",
        "Accept-Ranges": "bytes",
    }
    wanted = request.headers.get("range")
    start, end, status = 0, content.size - 1, 200
    if wanted is not None:
        span = _range(wanted, content.size)
        if span is None:
            return FastJSON(
                error_body(
                    ErrorCode.RANGE_NOT_SATISFIABLE, "Requested range not satisfiable", "Range"
                ),
                status_code=416,
                headers={**headers, "Content-Range": f"bytes */{content.size}"},
            )
        start, end, status = *span, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{content.size}"
    headers["Content-Length"] = str(end - start + 1)
    return StreamingResponse(
        content.chunks(start, end),
        status_code=status,
        media_type=item.content_type,
        headers=headers,
    )


# -- change -----------------------------------------------------------------------------


@router.put("/message-store/{messageId}", response_model=MessageInfo, operation_id="updateMessage")
async def update_message(
    request: Request,
    response: Response,
    ctx: Ctx,
    who: MediumWriter,
    messageId: str,
    body: ReadStatusBody,
) -> FastJSON:
    message = await ctx.mailbox.set_read_status(
        message_id(messageId), body.readStatus, extension_id=who.extension_id
    )
    return FastJSON(message.to_json(base_url(request)), headers=_headers(response))


@router.patch("/message-store/{messageId}", response_model=MessageInfo, operation_id="patchMessage")
async def patch_message(
    request: Request,
    response: Response,
    ctx: Ctx,
    who: MediumWriter,
    messageId: str,
    body: PatchBody,
) -> FastJSON:
    if body.readStatus is None and body.availability is None:
        raise invalid("readStatus", None, "Give readStatus, availability or both.")
    mailbox, target = ctx.mailbox, message_id(messageId)
    message = await mailbox.get(target, extension_id=who.extension_id)
    if body.availability is not None and message.availability is not Availability.ALIVE:
        if message.availability is Availability.PURGED:
            raise invalid("availability", "Alive", "A Purged message cannot be restored.")
        message = await mailbox.change_availability(
            target,
            AvailabilityAction.RESTORE,
            reason="restored through the API",
            extension_id=who.extension_id,
        )
    if body.readStatus is not None:
        message = await mailbox.set_read_status(
            target, body.readStatus, extension_id=who.extension_id
        )
    return FastJSON(message.to_json(base_url(request)), headers=_headers(response))


@router.delete(
    "/message-store/{messageId}",
    status_code=204,
    response_class=Response,
    operation_id="deleteMessage",
)
async def delete_message(
    response: Response, ctx: Ctx, who: MediumWriter, messageId: str, purge: bool = False
) -> Response:
    mailbox, target = ctx.mailbox, message_id(messageId)
    message = await mailbox.get(target, extension_id=who.extension_id)
    if message.availability is not Availability.PURGED:
        await mailbox.change_availability(
            target,
            AvailabilityAction.PURGE if purge else AvailabilityAction.DELETE,
            reason="deleted through the API",
            extension_id=who.extension_id,
        )
    return Response(status_code=204, headers=_headers(response))


@router.delete(
    "/message-store",
    status_code=204,
    response_class=Response,
    operation_id="deleteMessageByFilter",
)
async def delete_by_filter(
    response: Response,
    ctx: Ctx,
    who: MediumWriter,
    conversationId: Annotated[list[int] | None, Query(max_length=50)] = None,
    type: Annotated[DeleteType | None, Query()] = None,
    dateTo: Time = None,
) -> Response:
    if conversationId and type is not None:
        raise ApiError(
            400,
            ErrorCode.CONFLICTING_FILTERS,
            "Give conversationId or type, not both",
            parameter="type",
        )
    if conversationId and any(c < 1 or c > MAX_CONVERSATION for c in conversationId):
        raise invalid("conversationId", conversationId)
    mailbox = ctx.mailbox
    until = when("dateTo", dateTo) or mailbox.clock.now()
    kinds = () if type in (None, "All") else (MessageType(type),)
    conversations: list[int | None] = [*conversationId] if conversationId else [None]
    for conversation in conversations:
        while True:  # deleted messages leave the Alive set: page 1 again until done
            query = MessageQuery(
                extension_id=who.extension_id,
                conversation_id=conversation,
                message_type=kinds,
                date_from=datetime(1970, 1, 1, tzinfo=until.tzinfo),
                date_to=until,
                per_page=MAX_PER_PAGE,
            )
            found = await mailbox.find(query)
            for message in found.records:
                await mailbox.change_availability(
                    message.id,
                    AvailabilityAction.DELETE,
                    reason="deleted through the API",
                    extension_id=who.extension_id,
                )
            if len(found.records) < MAX_PER_PAGE:
                break
    return Response(status_code=204, headers=_headers(response))


# -- sync -------------------------------------------------------------------------------


@router.get("/message-sync", response_model=SyncResult, operation_id="syncMessages")
async def sync(
    request: Request,
    response: Response,
    ctx: Ctx,
    who: LightReader,
    syncType: Literal["FSync", "ISync"],
    syncToken: Annotated[str | None, Query(max_length=2000)] = None,
    messageType: Annotated[list[MessageType] | None, Query()] = None,
    direction: Annotated[list[Direction] | None, Query()] = None,
    conversationId: Annotated[int | None, Query(ge=1, le=MAX_CONVERSATION)] = None,
    dateFrom: Time = None,
    dateTo: Time = None,
    recordCount: Annotated[int | None, Query(ge=1, le=10**6)] = None,
) -> FastJSON:
    now = ctx.mailbox.clock.now()
    count = min(recordCount or SYNC_DEFAULT_COUNT, SYNC_MAX_COUNT)
    filters: dict[str, Any] = {
        "messageType": sorted(t.value for t in messageType or ()),
        "direction": sorted(d.value for d in direction or ()),
        "conversationId": conversationId,
    }
    changed_since = date_from = date_to = None
    if syncType == "ISync":
        if not syncToken:
            raise _full_sync_required()
        since, filters = _read_token(syncToken)
        if not TOKEN_OLDEST <= since <= now + SYNC_OVERLAP:
            raise _full_sync_required()  # well-formed, but not a time a token of ours has
        changed_since = since - SYNC_OVERLAP
    else:
        date_to = when("dateTo", dateTo) or now
        date_from = when("dateFrom", dateFrom) or _before(date_to, SYNC_DEFAULT_WINDOW)
    query = SyncQuery(
        who.extension_id,
        count + 1,
        changed_since=changed_since,
        date_from=date_from,
        date_to=date_to,
        message_type=tuple(MessageType(t) for t in filters["messageType"]),
        direction=tuple(Direction(d) for d in filters["direction"]),
        conversation_id=filters["conversationId"],
    )
    found = await ctx.mailbox.sync(query)
    older = len(found) > count
    base = base_url(request)
    records = [
        m.to_json(base)
        if m.availability is Availability.ALIVE
        else {"id": m.id, "availability": m.availability.value}
        for m in found[:count]
    ]
    query_string = request.url.query
    body = {
        "uri": f"{base}{request.url.path}" + (f"?{query_string}" if query_string else ""),
        "records": records,
        "syncInfo": {
            "syncType": syncType,
            "syncToken": _token(now, filters),
            "syncTime": iso(now),
            "olderRecordsExist": older,
        },
    }
    return FastJSON(body, headers=_headers(response))


def _before(at: datetime, span: timedelta) -> datetime:
    """``at - span``, or the earliest time there is (a date in year 1 has no day before)."""
    try:
        return at - span
    except OverflowError:
        return datetime.min.replace(tzinfo=at.tzinfo)


def _token(at: datetime, filters: dict[str, Any]) -> str:
    raw = json.dumps({"v": 1, "t": at.isoformat(), "f": filters}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _full_sync_required() -> ApiError:
    return ApiError(
        400,
        ErrorCode.FULL_SYNC_REQUIRED,
        "The sync token is invalid: full synchronization is required",
        parameter="syncToken",
    )


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
        if conversation is not None and (
            not isinstance(conversation, int) or not 1 <= conversation <= MAX_CONVERSATION
        ):
            raise ValueError("not a token")  # well-formed, but no token of ours says so
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
