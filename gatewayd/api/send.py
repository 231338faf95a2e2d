"""Sending through the API: SMS (JSON), fax (multipart/form-data or multipart/mixed),
company pager. The messages join the same mailbox queue as mail does, and the same
dispatchers send them."""

from __future__ import annotations

import asyncio
import email.message
import email.parser
import email.policy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from gatewayd.api.auth import Authenticator, Caller
from gatewayd.api.deps import PREFIX, base_url
from gatewayd.api.errors import ApiError, FastJSON, invalid, not_found
from gatewayd.api.models import MessageInfo, PagerBody, SmsBody
from gatewayd.api.params import when
from gatewayd.destinations import NumberError, parse_number, refusal
from gatewayd.errors import RenderError
from gatewayd.ingress.sniff import describe, sniff, supported
from gatewayd.mailbox import Mailbox, Message, NewAttachment, NewMessage, Party
from gatewayd.model import AttachmentType, Direction, FaxResolution, MessageType
from gatewayd.render import probe
from gatewayd.sms import encoding

ORIGIN = "api"
FAX_BODY_LIMIT = 55 * 1000 * 1000
COVER_TEXT_LIMIT = 1024
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


@dataclass
class FaxRequest:
    to: list[str]
    documents: list[tuple[str | None, str, bytes]]  # file name, declared type, bytes
    resolution: str | None = None
    cover_index: str | None = None
    cover_text: str | None = None
    send_time: str | None = None


def router(
    mailbox: Mailbox,
    auth: Authenticator,
    on_queued: Callable[[Sequence[Message]], None],
    *,
    office: bool,
) -> APIRouter:
    api = APIRouter(prefix=PREFIX)

    def destination(text: str, channel: str, parameter: str) -> str:
        try:
            number = parse_number(text, auth.settings.smtp.default_region)
        except NumberError as exc:
            raise invalid(parameter, text, str(exc)) from None
        policy = auth.settings.sms.policy if channel == "sms" else auth.settings.fax.policy
        why = refusal(number, policy, channel)
        if why:
            raise ApiError(403, "MSG-384", f"The destination is not allowed: {why}",
                           parameter=parameter, value=text)  # fmt: skip
        return number.e164

    async def created(request: Request, response: Response, batch: list[NewMessage]) -> FastJSON:
        made = await asyncio.shield(mailbox.create_many(batch))
        on_queued(made)
        return FastJSON(made[0].to_json(base_url(request)), headers=dict(response.headers))

    # -- SMS ----------------------------------------------------------------------------

    @api.post("/sms", response_model=MessageInfo, operation_id="createSMSMessage")
    async def send_sms(
        request: Request, response: Response, accountId: str, extensionId: str, body: SmsBody
    ) -> FastJSON:
        who = auth.caller(request, response, accountId, extensionId, "Medium", write=True)
        sender = body.from_.phoneNumber
        if sender not in who.user.sms_numbers:
            raise ApiError(403, "MSG-240", f"{sender} is not one of this extension's SMS numbers",
                           parameter="from.phoneNumber", value=sender)  # fmt: skip
        if len(body.to) != 1:
            raise invalid("to", len(body.to), "An SMS goes to exactly one number.")
        to = destination(body.to[0].phoneNumber, "sms", "to.phoneNumber")
        units = len(body.text.encode("utf-16-le")) // 2
        if units > 1000:
            raise invalid("text", None, f"At most 1000 UTF-16 code units; this text has {units}.")
        parts = len(encoding.split(body.text).parts)
        if parts > auth.settings.sms.max_parts:
            raise invalid("text", None, f"The text needs {parts} SMS parts; at most "
                          f"{auth.settings.sms.max_parts} are allowed.")  # fmt: skip
        ours = Party(phone_number=sender, name=who.user.name or None)
        message = NewMessage(
            account_id=who.account_id, extension_id=who.extension_id, type=MessageType.SMS,
            direction=Direction.OUTBOUND, from_=ours,
            to=(Party(phone_number=to),), origin=ORIGIN, subject=body.text,
            attachments=(NewAttachment.text_of_message(),),
        )  # fmt: skip
        return await created(request, response, [message])

    # -- fax ----------------------------------------------------------------------------

    @api.post(
        "/fax", response_model=MessageInfo, operation_id="createFaxMessage",
        openapi_extra={"requestBody": {"required": True, "content": FAX_FORM}},
        responses={413: {"description": "Too large (MSG-338)"},
                   415: {"description": "Unsupported media type (MSG-348)"}},
    )  # fmt: skip
    async def send_fax(
        request: Request, response: Response, accountId: str, extensionId: str
    ) -> FastJSON:
        who = auth.caller(request, response, accountId, extensionId, "Heavy", write=True)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > FAX_BODY_LIMIT:
            raise ApiError(413, "MSG-338", "The request is larger than 55 MB")
        form = await _fax_request(request)
        return await created(request, response, await _fax_messages(who, form))

    async def _fax_messages(who: Caller, form: FaxRequest) -> list[NewMessage]:
        fax = auth.settings.fax
        if not form.to:
            raise invalid("to", None, "Give at least one destination.")
        numbers = list(dict.fromkeys(destination(t, "fax", "to") for t in form.to))
        resolution = _choice("faxResolution", form.resolution, {"High", "Low"})
        cover = _integer("coverIndex", form.cover_index, 0, 28)
        if form.cover_text is not None and len(form.cover_text) > COVER_TEXT_LIMIT:
            raise invalid("coverPageText", None, f"At most {COVER_TEXT_LIMIT} characters.")
        send_time = when("sendTime", form.send_time) if form.send_time else None
        now = mailbox.clock.now()
        if send_time is not None and send_time <= now:
            send_time = None  # in the past: now
        if not form.documents and not (cover and form.cover_text):
            raise ApiError(400, "MSG-347", "The fax has no attachment", parameter="attachment")
        if len(form.documents) > fax.max_attachments:
            raise invalid("attachment", len(form.documents),
                          f"At most {fax.max_attachments} attachments.")  # fmt: skip
        allowed = supported(office)
        attachments = []
        pages = 1 if cover else 0
        for index, (name, declared, data) in enumerate(form.documents):
            label = name or f"attachment {index + 1}"
            if not data:
                raise ApiError(400, "MSG-347", f"{label} is empty", parameter="attachment")
            if len(data) > fax.max_input_bytes:
                raise ApiError(413, "MSG-337", f"{label} is larger than the limit",
                               parameter="attachment")  # fmt: skip
            kind = sniff(data, declared)
            if kind is None or kind not in allowed:
                raise ApiError(415, "MSG-348", f"{label}: cannot fax this type; faxable are "
                               f"{describe(allowed)}", parameter="attachment")  # fmt: skip
            try:
                pages += await asyncio.to_thread(probe.pages, kind, data)
            except RenderError as exc:
                raise ApiError(400, "MSG-349", f"{label}: {exc.reason}",
                               parameter="attachment") from exc  # fmt: skip
            attachments.append(NewAttachment(AttachmentType.SOURCE_DOCUMENT, kind.value,
                                             data=data, file_name=name))  # fmt: skip
        if pages > fax.max_pages:
            raise invalid("attachment", pages, f"The fax has {pages} pages; at most "
                          f"{fax.max_pages} are allowed.")  # fmt: skip
        sender = Party(phone_number=who.user.fax_number or None, name=who.user.name or None)
        return [
            NewMessage(
                account_id=who.account_id,
                extension_id=who.extension_id,
                type=MessageType.FAX,
                direction=Direction.OUTBOUND,
                from_=sender,
                to=(Party(phone_number=number),),
                origin=ORIGIN,
                attachments=tuple(attachments),
                fax_resolution=FaxResolution(resolution)
                if resolution
                else (FaxResolution.HIGH if fax.resolution == "fine" else FaxResolution.LOW),
                cover_index=cover if cover is not None else (1 if fax.cover else 0),
                cover_page_text=form.cover_text or None,
                send_time=send_time,
            )
            for number in numbers
        ]

    # -- company pager ------------------------------------------------------------------

    @api.post("/company-pager", response_model=MessageInfo,
              operation_id="createInternalTextMessage")  # fmt: skip
    async def send_pager(
        request: Request, response: Response, accountId: str, extensionId: str, body: PagerBody
    ) -> FastJSON:
        who = auth.caller(request, response, accountId, extensionId, "Medium", write=True)
        me = who.user
        conversation = None
        recipients = []
        if body.replyOn is not None:
            original = await mailbox.get(body.replyOn, extension_id=who.extension_id)
            if original.type is not MessageType.PAGER:
                raise invalid("replyOn", body.replyOn, "Not a pager message.")
            conversation = original.conversation_id
            if not body.to:
                numbers = {p.extension_number for p in (original.from_, *original.to)}
                recipients = [u for u in auth.settings.users if u.account_id == me.account_id
                              and u.extension_number in numbers and u is not me]  # fmt: skip
        for index, party in enumerate(body.to or ()):
            found = next(
                (u for u in auth.settings.users if u.account_id == me.account_id and (
                    (party.extensionId is not None and str(u.extension_id) == party.extensionId)
                    or (party.extensionNumber is not None
                        and u.extension_number == party.extensionNumber))),
                None,
            )  # fmt: skip
            if found is None:
                raise not_found(f"to[{index}]", party.extensionNumber or party.extensionId)
            recipients.append(found)
        if not recipients:
            raise invalid("to", None, "Give at least one extension.")
        sender = Party(extension_number=me.extension_number, extension_id=me.extension_id,
                       name=me.name)  # fmt: skip
        to = tuple(Party(extension_number=u.extension_number, extension_id=u.extension_id,
                         name=u.name) for u in recipients)  # fmt: skip
        thread = conversation or mailbox.new_conversation_id()
        own = NewMessage(
            account_id=me.account_id, extension_id=me.extension_id, type=MessageType.PAGER,
            direction=Direction.OUTBOUND, from_=sender, to=to, origin=ORIGIN,
            subject=body.text, attachments=(NewAttachment.text_of_message(),),
            conversation_id=thread,
        )  # fmt: skip
        copies = [
            NewMessage(
                account_id=u.account_id,
                extension_id=u.extension_id,
                type=MessageType.PAGER,
                direction=Direction.INBOUND,
                from_=sender,
                to=to,
                origin=ORIGIN,
                subject=body.text,
                attachments=(NewAttachment.text_of_message(),),
                conversation_id=thread,
            )
            for u in recipients
        ]
        made = await mailbox.create_many([own, *copies])  # one transaction: all or none
        return FastJSON(made[0].to_json(base_url(request)), headers=dict(response.headers))

    return api


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


async def _fax_request(request: Request) -> FaxRequest:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        try:
            form = await request.form(max_files=100, max_fields=200)
        except Exception as exc:  # python-multipart's parse errors have no common base
            raise ApiError(400, "MSG-349", f"Unable to parse the fax request: {exc}") from None
        try:
            documents: list[tuple[str | None, str, bytes]] = []
            for item in form.getlist("attachment"):
                if isinstance(item, UploadFile):
                    documents.append((item.filename, item.content_type or "", await item.read()))
                else:
                    documents.append((None, "text/plain", item.encode()))
            text = {k: v for k, v in form.items() if isinstance(v, str)}
            to = [v for v in form.getlist("to") if isinstance(v, str)]
        finally:
            await form.close()  # the uploads' temporary files
        return FaxRequest(
            to=_to_values(to), documents=documents, resolution=text.get("faxResolution"),
            cover_index=text.get("coverIndex"), cover_text=text.get("coverPageText"),
            send_time=text.get("sendTime"),
        )  # fmt: skip
    if kind == "multipart/mixed":
        return _mixed(request.headers["content-type"], await request.body())
    raise ApiError(415, "MSG-348", "Send the fax as multipart/form-data or multipart/mixed")


def _mixed(content_type: str, body: bytes) -> FaxRequest:
    """multipart/mixed: a JSON part with the envelope, then one part per document."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    parts = list(parsed.iter_parts()) if parsed.is_multipart() else []
    if not parts or parts[0].get_content_type() != "application/json":
        raise ApiError(400, "MSG-349", "Unable to parse the fax envelope: the first part "
                       "must be application/json")  # fmt: skip
    try:
        envelope = json.loads(_payload(parts[0]) or b"{}")
    except ValueError:
        raise ApiError(400, "MSG-349", "Unable to parse the fax envelope (not JSON)") from None
    if not isinstance(envelope, dict):
        raise ApiError(400, "MSG-349", "Unable to parse the fax envelope (not an object)")
    documents: list[tuple[str | None, str, bytes]] = []
    for part in parts[1:]:
        name = part.get_filename()
        if name is None:
            raise ApiError(400, "MSG-351", "Each document needs a Content-Disposition with a "
                           "filename", parameter="attachment")  # fmt: skip
        documents.append((name, part.get_content_type(), _payload(part)))
    cover = envelope.get("coverIndex")
    send_time = envelope.get("sendTime")
    return FaxRequest(
        to=_to_values(envelope.get("to", [])), documents=documents,
        resolution=envelope.get("faxResolution"),
        cover_index=str(cover) if cover is not None else None,
        cover_text=envelope.get("coverPageText"),
        send_time=send_time if isinstance(send_time, str) else None,
    )  # fmt: skip


def _payload(part: email.message.Message) -> bytes:
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""
