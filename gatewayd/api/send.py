"""Sending through the API: SMS (JSON), fax (multipart/form-data or multipart/mixed),
company pager. The messages join the same mailbox queue as mail does, and the same
dispatchers send them.

SMS and fax are admitted as mail is (gatewayd/admission); this module reads the request
into admission's plain values and words a Refusal as the platform's error (``_error``).
The handlers take the daemon's parts and the caller as dependencies (api/deps.py).
"""

from __future__ import annotations

import asyncio
import email.message
import email.policy
import json
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from gatewayd.admission import Channel, Code, Refusal, fax, mime, sms
from gatewayd.admission.fax import COVER_TEXT_LIMIT, FaxOptions, Upload
from gatewayd.api.deps import PREFIX, Context, Ctx, HeavyWriter, MediumWriter, base_url
from gatewayd.api.errors import ApiError, ErrorCode, FastJSON, invalid, not_found
from gatewayd.api.gate import FAX_BODY_LIMIT
from gatewayd.api.models import MessageInfo, PagerBody, PagerParty, SmsBody
from gatewayd.api.params import when
from gatewayd.config.settings import User
from gatewayd.mailbox import NewAttachment, NewMessage, Party
from gatewayd.model import Direction, FaxResolution, MessageType

ORIGIN = "api"
SMS_UNIT_LIMIT = 1000  # UTF-16 code units, as the platform's SMS endpoint
FAX_FORM = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "required": ["to", "attachment"],
            "properties": {
                "to": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "minLength": 1, "maxLength": 40},
                },
                "attachment": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "format": "binary"},
                },
                "faxResolution": {"type": "string", "enum": ["High", "Low"]},
                "coverIndex": {"type": "integer", "minimum": 0, "maximum": 28},
                "coverPageText": {"type": "string", "maxLength": COVER_TEXT_LIMIT},
                "sendTime": {"type": "string", "format": "date-time"},
            },
        }
    },
    "multipart/mixed": {"schema": {"type": "string", "format": "binary"}},
}

router = APIRouter(prefix=PREFIX)


@dataclass
class FaxRequest:
    to: list[str]
    documents: list[Upload]
    resolution: str | None = None
    cover_index: str | None = None
    cover_text: str | None = None
    send_time: str | None = None


async def _created(
    ctx: Context, request: Request, response: Response, batch: list[NewMessage]
) -> FastJSON:
    made = await asyncio.shield(ctx.mailbox.create_many(batch))
    ctx.on_queued(made)
    return FastJSON(made[0].to_json(base_url(request)), headers=dict(response.headers))


# -- SMS --------------------------------------------------------------------------------


@router.post("/sms", response_model=MessageInfo, operation_id="createSMSMessage")
async def send_sms(
    request: Request, response: Response, ctx: Ctx, who: MediumWriter, body: SmsBody
) -> FastJSON:
    numbers = [to.phoneNumber for to in body.to]
    try:
        batch = sms_batch(ctx, who.user, body.from_.phoneNumber, numbers, body.text)
    except Refusal as exc:
        raise _error(exc, Channel.SMS) from None
    return await _created(ctx, request, response, batch)


def sms_batch(
    ctx: Context, user: User, sender: str, numbers: list[str], text: str
) -> list[NewMessage]:
    """What a ``POST …/sms`` body asks to store, as admission makes it (Refusal raised):
    for this route and for its short way (api/sms_route.py)."""
    return sms.messages(
        text,
        numbers,
        user=user,
        settings=ctx.settings,
        origin=ORIGIN,
        from_number=sender,
        max_destinations=1,
        max_units=SMS_UNIT_LIMIT,
    )


# -- fax --------------------------------------------------------------------------------


@router.post(
    "/fax",
    response_model=MessageInfo,
    operation_id="createFaxMessage",
    openapi_extra={"requestBody": {"required": True, "content": FAX_FORM}},
    responses={
        413: {"description": "Too large (MSG-338)"},
        415: {"description": "Unsupported media type (MSG-348)"},
    },
)
async def send_fax(request: Request, response: Response, ctx: Ctx, who: HeavyWriter) -> FastJSON:
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > FAX_BODY_LIMIT:
        raise ApiError(413, ErrorCode.REQUEST_TOO_LARGE, "The request is larger than 55 MB")
    try:
        form = await _fax_request(request, mime.MimeLimits.from_settings(ctx.settings.smtp))
    except Refusal as exc:
        raise _error(exc, Channel.FAX) from None
    resolution = _choice("faxResolution", form.resolution, {"High", "Low"})
    cover = _integer("coverIndex", form.cover_index, 0, 28)
    send_time = when("sendTime", form.send_time) if form.send_time else None
    if send_time is not None and send_time <= ctx.mailbox.clock.now():
        send_time = None  # in the past: now
    options = FaxOptions(
        resolution=FaxResolution(resolution) if resolution else None,
        cover_index=cover,
        cover_text=form.cover_text or "",
        send_time=send_time,
    )
    try:
        batch = await fax.messages(
            form.documents,
            form.to,
            user=who.user,
            settings=ctx.settings,
            options=options,
            office=ctx.office,
            origin=ORIGIN,
            max_destinations=ctx.settings.smtp.max_recipients,  # as many as a mail may have
        )
    except Refusal as exc:
        raise _error(exc, Channel.FAX) from None
    return await _created(ctx, request, response, batch)


def _error(refusal: Refusal, channel: Channel) -> ApiError:
    """A Refusal as the platform words it (statuses and codes as RingCentral's)."""
    r = refusal
    to = "to.phoneNumber" if channel is Channel.SMS else "to"
    label = r.document.label if r.document is not None else "the attachment"
    match r.code:
        case Code.NO_SMS_NUMBER:
            return ApiError(
                403,
                ErrorCode.NOT_YOUR_NUMBER,
                "This extension has no SMS number",
                parameter="from.phoneNumber",
            )
        case Code.NOT_YOUR_NUMBER:
            return ApiError(
                403,
                ErrorCode.NOT_YOUR_NUMBER,
                f"{r.value} is not one of this extension's SMS numbers",
                parameter="from.phoneNumber",
                value=r.value,
            )
        case Code.NO_DESTINATION | Code.TOO_MANY_DESTINATIONS if channel is Channel.SMS:
            return invalid("to", r.count, "An SMS goes to exactly one number.")
        case Code.NO_DESTINATION:
            return invalid("to", None, "Give at least one destination.")
        case Code.TOO_MANY_DESTINATIONS:
            return invalid("to", r.count, f"At most {r.limit} destinations.")
        case Code.BAD_NUMBER:
            return invalid(to, r.value, r.reason)
        case Code.DESTINATION_REFUSED:
            return ApiError(
                403,
                ErrorCode.DESTINATION_REFUSED,
                f"The destination is not allowed: {r.reason}",
                parameter=to,
                value=r.value,
            )
        case Code.NO_TEXT:
            return invalid("text", None, "Give the text to send.")
        case Code.TOO_MANY_UNITS:
            return invalid(
                "text", None, f"At most {r.limit} UTF-16 code units; this text has {r.count}."
            )
        case Code.TEXT_TOO_LONG:
            return invalid(
                "text", None, f"The text needs {r.count} SMS parts; at most {r.limit} are allowed."
            )
        case Code.COVER_TEXT_TOO_LONG:
            return invalid("coverPageText", None, f"At most {r.limit} characters.")
        case Code.NO_FAX_CONTENT:
            return ApiError(
                400, ErrorCode.NO_ATTACHMENT, "The fax has no attachment", parameter="attachment"
            )
        case Code.TOO_MANY_DOCUMENTS:
            return invalid("attachment", r.count, f"At most {r.limit} attachments.")
        case Code.EMPTY_DOCUMENT:
            return ApiError(
                400, ErrorCode.NO_ATTACHMENT, f"{label} is empty", parameter="attachment"
            )
        case Code.DOCUMENT_TOO_LARGE:
            return ApiError(
                413,
                ErrorCode.DOCUMENT_TOO_LARGE,
                f"{label} is larger than the limit",
                parameter="attachment",
            )
        case Code.UNSUPPORTED_DOCUMENT:
            return ApiError(
                415,
                ErrorCode.UNSUPPORTED_MEDIA,
                f"{label}: cannot fax this type; faxable are {r.reason}",
                parameter="attachment",
            )
        case Code.UNREADABLE_DOCUMENT:
            return ApiError(
                400, ErrorCode.UNREADABLE_FAX, f"{label}: {r.reason}", parameter="attachment"
            )
        case Code.TOO_MANY_PAGES:
            return invalid(
                "attachment",
                r.count,
                f"The fax has {r.count} pages; at most {r.limit} are allowed.",
            )
        case Code.NESTED_TOO_DEEPLY:
            return ApiError(
                400,
                ErrorCode.UNREADABLE_FAX,
                f"The request is nested too deeply: at most {r.limit} levels of MIME parts",
            )
        case Code.TOO_MANY_PARTS:
            return ApiError(
                400,
                ErrorCode.UNREADABLE_FAX,
                f"The request has too many MIME parts: at most {r.limit}",
            )


# -- company pager ----------------------------------------------------------------------


@router.post("/company-pager", response_model=MessageInfo, operation_id="createInternalTextMessage")
async def send_pager(
    request: Request, response: Response, ctx: Ctx, who: MediumWriter, body: PagerBody
) -> FastJSON:
    me = who.user
    users = [u for u in ctx.settings.users if u.account_id == me.account_id]
    conversation = None
    recipients = []
    if body.replyOn is not None:
        original = await ctx.mailbox.get(body.replyOn, extension_id=who.extension_id)
        if original.type is not MessageType.PAGER:
            raise invalid("replyOn", body.replyOn, "Not a pager message.")
        conversation = original.conversation_id
        if not body.to:
            numbers = {p.extension_number for p in (original.from_, *original.to)}
            recipients = [u for u in users if u.extension_number in numbers and u is not me]
    for index, party in enumerate(body.to or ()):
        found = next((u for u in users if _named(u, party)), None)
        if found is None:
            raise not_found(f"to[{index}]", party.extensionNumber or party.extensionId)
        recipients.append(found)
    if not recipients:
        raise invalid("to", None, "Give at least one extension.")
    sender = Party(extension_number=me.extension_number, extension_id=me.extension_id, name=me.name)
    to = tuple(
        Party(extension_number=u.extension_number, extension_id=u.extension_id, name=u.name)
        for u in recipients
    )
    thread = conversation or ctx.mailbox.new_conversation_id()
    # The sender's own Sent message first, then a Received copy for each recipient.
    owners = [(me, Direction.OUTBOUND), *((u, Direction.INBOUND) for u in recipients)]
    batch = [
        NewMessage(
            account_id=u.account_id,
            extension_id=u.extension_id,
            type=MessageType.PAGER,
            direction=direction,
            from_=sender,
            to=to,
            origin=ORIGIN,
            subject=body.text,
            attachments=(NewAttachment.text_of_message(),),
            conversation_id=thread,
        )
        for u, direction in owners
    ]
    made = await ctx.mailbox.create_many(batch)  # one transaction: all or none
    return FastJSON(made[0].to_json(base_url(request)), headers=dict(response.headers))


def _named(user: User, party: PagerParty) -> bool:
    if party.extensionId is not None and str(user.extension_id) == party.extensionId:
        return True
    return party.extensionNumber is not None and user.extension_number == party.extensionNumber


def _choice(name: str, value: str | None, allowed: set[str]) -> str | None:
    if value is None or value == "":
        return None
    if value not in allowed:
        raise invalid(name, value, f"One of {', '.join(sorted(allowed))}.")
    return value


def _integer(name: str, value: str | None, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    if not value.strip().isdigit() or not low <= int(value) <= high:
        raise invalid(name, value, f"An integer from {low} to {high}.")
    return int(value)


def _to_values(raw: Any) -> list[str]:
    """``to`` as the form gives it: bare numbers, or JSON {"phoneNumber", "name"}."""
    out = []
    for item in raw if isinstance(raw, list) else [raw]:
        if isinstance(item, dict):
            number = item.get("phoneNumber")
        elif isinstance(item, str) and item.lstrip().startswith("{"):
            try:
                number = json.loads(item).get("phoneNumber")
            except (ValueError, AttributeError):
                number = None
        else:
            number = item
        if not isinstance(number, str) or not number:
            raise invalid("to", str(item)[:40], "Give a phone number.")
        out.append(number)
    return out


async def _fax_request(request: Request, limits: mime.MimeLimits) -> FaxRequest:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=100, max_fields=200)
        except Exception:  # python-multipart's parse errors have no common base
            # Its words name Python's types and offsets: the client is told ours.
            raise ApiError(
                400,
                ErrorCode.UNREADABLE_FAX,
                "Unable to parse the fax request: not valid multipart/form-data",
            ) from None
        try:
            documents: list[Upload] = []
            for item in form.getlist("attachment"):
                if isinstance(item, UploadFile):
                    documents.append(
                        Upload(item.filename, item.content_type or "", await item.read())
                    )
                else:
                    documents.append(Upload(None, "text/plain", item.encode()))
            text = {k: v for k, v in form.items() if isinstance(v, str)}
            to = [v for v in form.getlist("to") if isinstance(v, str)]
        finally:
            await form.close()  # the uploads' temporary files
        return FaxRequest(
            to=_to_values(to),
            documents=documents,
            resolution=text.get("faxResolution"),
            cover_index=text.get("coverIndex"),
            cover_text=text.get("coverPageText"),
            send_time=text.get("sendTime"),
        )
    if kind == "multipart/mixed":
        try:
            body = await request.body()
        except ClientDisconnect:
            raise ApiError(400, ErrorCode.UNREADABLE_FAX, "The request body ended early") from None
        # Parsing is work in proportion to the body (up to 55 MB): in a thread.
        return await asyncio.to_thread(_mixed, request.headers["content-type"], body, limits)
    raise ApiError(
        415, ErrorCode.UNSUPPORTED_MEDIA, "Send the fax as multipart/form-data or multipart/mixed"
    )


def _mixed(content_type: str, body: bytes, limits: mime.MimeLimits) -> FaxRequest:
    """multipart/mixed: a JSON part with the envelope, then one part per document.
    Refusal NESTED_TOO_DEEPLY / TOO_MANY_PARTS past the MIME limits."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    parsed = mime.parse(head + body, limits, email.policy.HTTP)
    assert isinstance(parsed, email.message.EmailMessage)  # what policy.HTTP makes
    parts = list(parsed.iter_parts()) if parsed.is_multipart() else []
    if not parts or parts[0].get_content_type() != "application/json":
        raise ApiError(
            400,
            ErrorCode.UNREADABLE_FAX,
            "Unable to parse the fax envelope: the first part must be application/json",
        )
    try:
        envelope = json.loads(_payload(parts[0]) or b"{}")
    except ValueError:
        raise ApiError(
            400, ErrorCode.UNREADABLE_FAX, "Unable to parse the fax envelope (not JSON)"
        ) from None
    if not isinstance(envelope, dict):
        raise ApiError(
            400, ErrorCode.UNREADABLE_FAX, "Unable to parse the fax envelope (not an object)"
        )
    documents: list[Upload] = []
    for part in parts[1:]:
        name = part.get_filename()
        if name is None:
            raise ApiError(
                400,
                ErrorCode.NO_FILE_NAME,
                "Each document needs a Content-Disposition with a filename",
                parameter="attachment",
            )
        documents.append(Upload(name, part.get_content_type(), _payload(part)))
    cover = envelope.get("coverIndex")
    send_time = envelope.get("sendTime")
    return FaxRequest(
        to=_to_values(envelope.get("to", [])),
        documents=documents,
        resolution=envelope.get("faxResolution"),
        cover_index=str(cover) if cover is not None else None,
        cover_text=envelope.get("coverPageText"),
        send_time=send_time if isinstance(send_time, str) else None,
    )


def _payload(part: email.message.Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""
