"""The mailbox in the console: the list with the message store's filters and paging,
SMS as conversations, one message (its fields, timeline, log lines for administrators,
fax pages, attachments) and what can be done to it.

Actions are POSTed forms (CSRF-checked) that redirect back: read, unread, delete,
restore, cancel (a Queued outbound SMS or fax), retry (a failed one: a new message,
shown next). The list, a conversation and an unfinished message refresh themselves
(htmx asks for the same page with ``part=...`` and swaps that part in).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gatewayd.console import logs
from gatewayd.console.sessions import Viewer
from gatewayd.console.web import BASE, Console, Refused, back_to, current, redirect
from gatewayd.destinations import NumberError, parse_number
from gatewayd.errors import BlobError, MessageNotFound, RenderError
from gatewayd.mailbox import EPOCH, Message, MessageQuery
from gatewayd.model import (
    AttachmentType,
    Availability,
    AvailabilityAction,
    Direction,
    MessageStatus,
    MessageType,
    ReadStatus,
)

PER_PAGE = 25
CHOICES: dict[str, tuple[str, ...]] = {
    "type": tuple(t.value for t in MessageType),
    "direction": tuple(d.value for d in Direction),
    "status": tuple(s.value for s in MessageStatus),
    "read": tuple(r.value for r in ReadStatus),
    "availability": tuple(a.value for a in Availability),
}
ACTIONS = ("read", "unread", "delete", "restore", "cancel", "retry")


@dataclass(slots=True)
class Filters:
    values: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    page: int = 1

    def query_string(self, **changes: Any) -> str:
        shown = {**self.values, **{k: str(v) for k, v in changes.items()}}
        return urlencode({k: v for k, v in shown.items() if v})


def _filters(request: Request, console: Console, viewer: Viewer) -> tuple[Filters, MessageQuery]:
    params = request.query_params
    found = Filters()
    extension_id, account_id = console.scope(viewer)
    query: dict[str, Any] = {"extension_id": extension_id, "account_id": account_id}
    query["date_from"] = EPOCH
    for name, allowed in CHOICES.items():
        value = params.get(name, "")
        if not value:
            continue
        if value not in allowed:
            found.problems.append(f"{name}: {value!r} is not one of {', '.join(allowed)}")
            continue
        found.values[name] = value
    if "type" in found.values:
        query["message_type"] = (MessageType(found.values["type"]),)
    if "direction" in found.values:
        query["direction"] = (Direction(found.values["direction"]),)
    if "status" in found.values:
        query["message_status"] = (MessageStatus(found.values["status"]),)
    if "read" in found.values:
        query["read_status"] = (ReadStatus(found.values["read"]),)
    if "availability" in found.values:
        query["availability"] = (Availability(found.values["availability"]),)
    for name, key, at in (("from", "date_from", time.min), ("to", "date_to", time.max)):
        text = params.get(name, "")
        if not text:
            continue
        try:
            day = date.fromisoformat(text)
        except ValueError:
            found.problems.append(f"{name}: {text!r} is not a date (YYYY-MM-DD)")
            continue
        found.values[name] = text
        query[key] = datetime.combine(day, at, tzinfo=UTC)
    phone = params.get("phone", "").strip()
    if phone:
        try:
            query["phone_number"] = parse_number(phone, console.settings.smtp.default_region).e164
            found.values["phone"] = phone
        except NumberError as exc:
            found.problems.append(f"phone: {exc}")
    extension = params.get("extension", "")
    if extension and viewer.admin:
        allowed_ids = {str(u.extension_id) for u in console.users_of(viewer)}
        if extension in allowed_ids:
            found.values["extension"] = extension
            query["extension_id"] = int(extension)
        else:
            found.problems.append(f"extension: {extension!r} is not an extension of the account")
    page = params.get("page", "1")
    found.page = int(page) if page.isdigit() and 0 < int(page) < 100_000 else 1
    query.update(page=found.page, per_page=PER_PAGE)
    return found, MessageQuery(**query)


async def messages_page(request: Request) -> Response:
    console = current(request)
    viewer = await console.viewer(request)
    filters, query = _filters(request, console, viewer)
    found = await console.mailbox.find(query)
    part = request.query_params.get("part")
    values: dict[str, Any] = {
        "filters": filters,
        "found": found,
        "choices": CHOICES,
        "users": console.users_of(viewer),
        "here": f"{BASE}/messages?{filters.query_string(page=filters.page)}",
    }
    if part == "rows":
        return console.page("_rows.html", request, **values)
    return console.page("messages.html", request, **values)


# -- conversations ---------------------------------------------------------------------------


async def conversations_page(request: Request) -> Response:
    console = current(request)
    viewer = await console.viewer(request)
    page = request.query_params.get("page", "1")
    number = int(page) if page.isdigit() and 0 < int(page) < 100_000 else 1
    extension_id, account_id = console.scope(viewer)
    query = MessageQuery(
        extension_id=extension_id,
        account_id=account_id,
        date_from=EPOCH,
        message_type=(MessageType.SMS,),
        distinct_conversations=True,
        page=number,
        per_page=PER_PAGE,
    )
    found = await console.mailbox.find(query)
    part = request.query_params.get("part")
    template = "_conversations.html" if part == "rows" else "conversations.html"
    return console.page(template, request, found=found, page=number)


async def conversation_page(request: Request) -> Response:
    console = current(request)
    viewer = await console.viewer(request)
    conversation = _id(request.path_params["conversation_id"])
    extension_id, account_id = console.scope(viewer)
    query = MessageQuery(
        extension_id=extension_id,
        account_id=account_id,
        date_from=EPOCH,
        conversation_id=conversation,
        message_type=(MessageType.SMS,),
        per_page=200,
    )
    found = await console.mailbox.find(query)
    if not found.records:
        raise MessageNotFound(conversation, what="conversation")
    thread = list(reversed(found.records))
    latest = thread[-1]
    ours = latest.from_ if latest.direction is Direction.OUTBOUND else latest.to[0]
    theirs = latest.to[0] if latest.direction is Direction.OUTBOUND else latest.from_
    mine = viewer.user.extension_id == latest.extension_id
    values: dict[str, Any] = {
        "thread": thread,
        "conversation": conversation,
        "ours": ours.phone_number,
        "theirs": theirs.phone_number,
        "can_reply": mine and ours.phone_number in viewer.user.sms_numbers,
    }
    if request.query_params.get("part") == "thread":
        return console.page("_thread.html", request, **values)
    return console.page("conversation.html", request, **values)


# -- one message ------------------------------------------------------------------------------


def _id(text: str) -> int:
    """A message, attachment or conversation id from a path (all below 2**63)."""
    if not text.isascii() or not text.isdigit() or len(text) > 19 or int(text) >= 2**63:
        raise MessageNotFound(0)
    return int(text)


def _rendered(message: Message) -> Any:
    return next(
        (
            a
            for a in message.attachments
            if a.type is AttachmentType.RENDERED_DOCUMENT and a.content_type == "image/tiff"
        ),
        None,
    )


def can_cancel(message: Message) -> bool:
    return (
        message.type in (MessageType.SMS, MessageType.FAX)
        and message.direction is Direction.OUTBOUND
        and message.message_status is MessageStatus.QUEUED
    )


def can_retry(message: Message) -> bool:
    return (
        message.type in (MessageType.SMS, MessageType.FAX)
        and message.direction is Direction.OUTBOUND
        and message.message_status in (MessageStatus.SENDING_FAILED, MessageStatus.DELIVERY_FAILED)
        and message.availability is not Availability.PURGED
    )


async def message_page(request: Request) -> Response:
    console = current(request)
    viewer = await console.viewer(request)
    message = await console.message(viewer, _id(request.path_params["message_id"]))
    part = request.query_params.get("part")
    own = message.extension_id == viewer.user.extension_id
    if own and part is None and message.read_status is ReadStatus.UNREAD:
        message = await console.mailbox.set_read_status(message.id, ReadStatus.READ)
    events = await console.mailbox.events(message.id)
    parts = await console.mailbox.parts(message.id) if message.type is MessageType.SMS else []
    log_path = console.settings.log.file
    lines: list[logs.LogLine] | None = None
    if viewer.admin and log_path is not None:
        lines = await asyncio.to_thread(logs.lines_for, log_path, message.id)
    rendered = _rendered(message)
    pages = message.fax_page_count or 0
    if rendered is not None and not pages:
        try:
            pages = await request.app.state.images.page_count(rendered.sha256)
        except (BlobError, RenderError):
            rendered = None  # the pages cannot be shown; the rest of the page can
    values: dict[str, Any] = {
        "message": message,
        "events": events,
        "parts": parts,
        "log_lines": lines,
        "log_file": log_path,
        "rendered": rendered,
        "pages": range(1, pages + 1) if rendered is not None else range(0),
        "can_cancel": can_cancel(message),
        "can_retry": can_retry(message),
        "here": f"{BASE}/messages/{message.id}",
        "owner": console.settings.user_by_extension(message.extension_id),
    }
    if part == "message":
        return console.page("_message.html", request, **values)
    return console.page("message.html", request, **values)


async def action(request: Request) -> Response:
    console = current(request)
    viewer, form = await console.posted(request)
    what = request.path_params["action"]
    if what not in ACTIONS:
        raise Refused(404, "Not found")
    message = await console.message(viewer, _id(request.path_params["message_id"]))
    mailbox = console.mailbox
    who = f"by {viewer.user.emails[0]} in the console"
    here = f"{BASE}/messages/{message.id}"
    match what:
        case "read" | "unread":
            status = ReadStatus.READ if what == "read" else ReadStatus.UNREAD
            await mailbox.set_read_status(message.id, status)
        case "delete" | "restore":
            wanted = AvailabilityAction.DELETE if what == "delete" else AvailabilityAction.RESTORE
            await mailbox.change_availability(message.id, wanted, reason=who)
        case "cancel":
            await mailbox.cancel(message.id, reason=who)
        case "retry":
            made = await mailbox.retry(message.id, reason=who)
            console.context.on_queued([made])
            return redirect(f"{BASE}/messages/{made.id}")
    return redirect(back_to(form, here))


async def attachment(request: Request) -> Response:
    console = current(request)
    viewer = await console.viewer(request)
    message = await console.message(viewer, _id(request.path_params["message_id"]))
    item, content = await console.mailbox.attachment(
        message.id, _id(request.path_params["attachment_id"])
    )
    name = item.file_name or f"{item.id}"
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
        "Content-Length": str(content.size),
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Cache-Control": "private, no-store",
    }
    return StreamingResponse(content.chunks(), media_type=item.content_type, headers=headers)


async def page_image(request: Request) -> Response:
    console = current(request)
    viewer = await console.viewer(request)
    message = await console.message(viewer, _id(request.path_params["message_id"]))
    rendered = _rendered(message)
    size = request.query_params.get("size", "thumb")
    number = request.path_params["page"]
    if rendered is None or size not in ("thumb", "full") or not number.isdigit():
        raise Refused(404, "Not found")
    try:
        data = await request.app.state.images.page(rendered.sha256, int(number) - 1, size)
    except RenderError as exc:
        raise Refused(404, "No such page", exc.reason) from None
    return Response(
        data,
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=86400, immutable"},
    )
