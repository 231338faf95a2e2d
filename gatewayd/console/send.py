"""Sending from the console: an SMS form and a fax form, admitted by the same rules as
the API's (gatewayd/admission, the same limits), queued the same way.

The SMS form shows, as one types, how many parts the text takes and in which alphabet
(GSM-7 or UCS-2): htmx posts the text to ``/send/sms/count``, which answers with what
gatewayd/gsm.py counts, so the form and the gateway never disagree. The fax form's
Preview button renders the pages with the daemon's render pool (as the fax will be
sent: the cover page for the first number, the documents, the resolution) and shows
them as thumbnails; Send queues one fax per number.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response

from gatewayd import gsm
from gatewayd.admission import Channel, Code, Refusal, fax, sms
from gatewayd.admission.fax import COVER_TEXT_LIMIT, FaxOptions, Upload
from gatewayd.console.sessions import Viewer
from gatewayd.console.web import BASE, Console, Refused, check_csrf, current, redirect
from gatewayd.errors import RenderError
from gatewayd.mailbox import NewMessage
from gatewayd.model import FaxResolution
from gatewayd.render.job import CoverSheet, RenderOptions, Source
from gatewayd.render.kinds import Kind

ORIGIN = "console"
SMS_UNIT_LIMIT = 1000  # as the API
MAX_FAX_NUMBERS = 50
FAX_BODY_LIMIT = 55 * 1000 * 1000
_SPLIT = re.compile(r"[\s,;]+")


def refusal_text(refusal: Refusal, channel: Channel) -> str:
    """A Refusal in words for a person at a form."""
    r = refusal
    label = r.document.label if r.document is not None else "a document"
    match r.code:
        case Code.NO_SMS_NUMBER:
            return "Your extension has no SMS number to send from."
        case Code.NOT_YOUR_NUMBER:
            return f"{r.value} is not one of your SMS numbers."
        case Code.NO_DESTINATION:
            return "Give a number to send to."
        case Code.TOO_MANY_DESTINATIONS:
            return f"At most {r.limit} numbers at once."
        case Code.BAD_NUMBER:
            return f"{r.value}: {r.reason}"
        case Code.DESTINATION_REFUSED:
            return f"This number may not be sent to: {r.reason}"
        case Code.NO_TEXT:
            return "Write the text to send."
        case Code.TOO_MANY_UNITS:
            return f"The text is too long: {r.count} characters, at most {r.limit}."
        case Code.TEXT_TOO_LONG:
            return f"The text needs {r.count} SMS parts; at most {r.limit} are allowed."
        case Code.COVER_TEXT_TOO_LONG:
            return f"The cover note is too long: at most {r.limit} characters."
        case Code.NO_FAX_CONTENT:
            return "Add a document, or a cover page with a note."
        case Code.TOO_MANY_DOCUMENTS:
            return f"At most {r.limit} documents."
        case Code.EMPTY_DOCUMENT:
            return f"{label} is empty."
        case Code.DOCUMENT_TOO_LARGE:
            return f"{label} is larger than {r.limit:,} bytes."
        case Code.UNSUPPORTED_DOCUMENT:
            return f"{label} cannot be faxed; faxable are {r.reason}."
        case Code.UNREADABLE_DOCUMENT:
            return f"{label}: {r.reason}"
        case Code.TOO_MANY_PAGES:
            return f"The fax has {r.count} pages; at most {r.limit} are allowed."
        case Code.NESTED_TOO_DEEPLY:
            return f"{label} is nested too deeply (more than {r.limit} levels)."
        case Code.TOO_MANY_PARTS:
            return f"{label} has too many parts (more than {r.limit})."


def part_count(text: str, max_parts: int) -> dict[str, Any]:
    """What the counter under the SMS text says."""
    alphabet = gsm.alphabet_for(text)
    parts = gsm.count_parts(text) if text else 0
    return {
        "alphabet": "GSM-7" if alphabet is gsm.Alphabet.GSM7 else "UCS-2",
        "units": gsm.length(text, alphabet),
        "parts": parts,
        "too_long": parts > max_parts,
        "max_parts": max_parts,
    }


# -- SMS ---------------------------------------------------------------------------------------


def _sms_values(console: Console, viewer: Viewer, form: Mapping[str, Any]) -> dict[str, Any]:
    text = str(form.get("text", ""))
    return {
        "numbers": viewer.user.sms_numbers,
        "chosen": str(form.get("from", "")),
        "to": str(form.get("to", "")),
        "text": text,
        "count": part_count(text, console.settings.sms.max_parts),
        "problem": None,
    }


async def sms_form(request: Request) -> Response:
    console = current(request)
    viewer = await console.viewer(request)
    return console.page(
        "send_sms.html", request, **_sms_values(console, viewer, request.query_params)
    )


async def sms_count(request: Request) -> Response:
    console = current(request)
    _, form = await console.posted(request)
    count = part_count(str(form.get("text", "")), console.settings.sms.max_parts)
    return console.page("_count.html", request, count=count)


async def sms_send(request: Request) -> Response:
    console = current(request)
    viewer, form = await console.posted(request)
    values = _sms_values(console, viewer, form)
    chosen = values["chosen"] or None
    try:
        batch = sms.messages(
            values["text"],
            [values["to"].strip()] if values["to"].strip() else [],
            user=viewer.user,
            settings=console.settings,
            origin=ORIGIN,
            from_number=chosen,
            max_destinations=1,
            max_units=SMS_UNIT_LIMIT,
            sender_email=viewer.user.emails[0],
        )
    except Refusal as exc:
        values["problem"] = refusal_text(exc, Channel.SMS)
        return console.page("send_sms.html", request, status=400, **values)
    made = await _queue(console, batch)
    conversation = made[0].conversation_id
    if conversation is not None:
        return redirect(f"{BASE}/conversations/{conversation}")
    return redirect(f"{BASE}/messages/{made[0].id}")


async def _queue(console: Console, batch: list[NewMessage]) -> list[Any]:
    made = await asyncio.shield(console.mailbox.create_many(batch))
    console.context.on_queued(made)
    return made


# -- fax -----------------------------------------------------------------------------------------


async def fax_form(request: Request) -> Response:
    console = current(request)
    await console.viewer(request)
    return console.page("send_fax.html", request, **_fax_values(console, {}))


def _fax_values(console: Console, form: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "to": str(form.get("to", "")),
        "note": str(form.get("note", "")),
        "cover": form.get("cover", "on" if console.settings.fax.cover else "") == "on",
        "resolution": str(form.get("resolution", "")),
        "problem": None,
        "preview": None,
        "note_limit": COVER_TEXT_LIMIT,
        "office": console.context.office,
    }


async def fax_post(request: Request) -> Response:
    """Preview or send (the button pressed says which)."""
    console = current(request)
    viewer = await console.viewer(request)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > FAX_BODY_LIMIT:
        raise Refused(413, "Too large", "The documents are larger than 55 MB together.")
    form = await request.form(max_files=100, max_fields=50)
    try:
        check_csrf(request, form, viewer.csrf)
        values = _fax_values(console, form)
        uploads = [
            Upload(item.filename, item.content_type or "", await item.read())
            for item in form.getlist("documents")
            if isinstance(item, UploadFile) and item.filename
        ]
    finally:
        await form.close()
    numbers = [n for n in _SPLIT.split(values["to"]) if n]
    previewing = form.get("action") == "preview"
    fragment = request.headers.get("hx-request") == "true" and previewing
    try:
        if len(numbers) > MAX_FAX_NUMBERS:
            raise Refusal(Code.TOO_MANY_DESTINATIONS, count=len(numbers), limit=MAX_FAX_NUMBERS)
        resolution = values["resolution"]
        options = FaxOptions(
            resolution=FaxResolution(resolution) if resolution in ("High", "Low") else None,
            cover_index=1 if values["cover"] else 0,
            cover_text=values["note"],
        )
        batch = await fax.messages(
            uploads,
            numbers,
            user=viewer.user,
            settings=console.settings,
            options=options,
            office=console.context.office,
            origin=ORIGIN,
            sender_email=viewer.user.emails[0],
        )
    except Refusal as exc:
        values["problem"] = refusal_text(exc, Channel.FAX)
        template = "_preview.html" if fragment else "send_fax.html"
        return console.page(template, request, status=400, **values)
    if previewing:
        try:
            values["preview"] = await _preview(request, console, viewer, batch[0])
        except RenderError as exc:
            values["problem"] = f"The pages could not be rendered: {exc.reason}"
        template = "_preview.html" if fragment else "send_fax.html"
        return console.page(template, request, **values)
    made = await _queue(console, batch)
    if len(made) == 1:
        return redirect(f"{BASE}/messages/{made[0].id}")
    return redirect(f"{BASE}/messages", type="Fax", direction="Outbound")


async def _preview(request: Request, console: Console, viewer: Viewer, new: NewMessage) -> Any:
    renderer = console.context.renderer
    if renderer is None:
        raise RenderError("previews are not available here (no render pool)")
    images = request.app.state.images
    token, out = images.new_preview_path()
    workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="gatewayd-preview-"))
    try:
        sources = []
        for number, item in enumerate(new.attachments, 1):
            assert item.data is not None  # admission hands documents over as bytes
            path = workdir / f"{number}"
            await asyncio.to_thread(path.write_bytes, item.data)
            sources.append(
                Source(item.file_name or f"document {number}", Kind(item.content_type), path)
            )
        options = RenderOptions.from_settings(
            console.settings.fax,
            resolution="normal" if new.fax_resolution is FaxResolution.LOW else "fine",
        )
        rendered = await renderer.render(sources, _cover(console, viewer, new), options, out)
    except BaseException:
        await asyncio.to_thread(out.unlink, True)
        raise
    finally:
        await asyncio.to_thread(shutil.rmtree, workdir, True)
    return await images.add_preview(token, viewer.user.emails[0], out, rendered.pages)


def _cover(console: Console, viewer: Viewer, new: NewMessage) -> CoverSheet | None:
    if not new.cover_index:
        return None
    recipient = new.to[0] if new.to else None
    return CoverSheet(
        recipient_number=(recipient.phone_number or "") if recipient else "",
        sender_name=viewer.user.name,
        sender_email=new.sender_email or "",
        sender_fax=new.from_.phone_number or "",
        subject=new.subject or "",
        note=new.cover_page_text or "",
        sent_at=console.mailbox.clock.now().astimezone(),
    )


async def preview_image(request: Request) -> Response:
    console = current(request)
    viewer = await console.viewer(request)
    images = request.app.state.images
    found = images.preview(request.path_params["token"], viewer.user.emails[0])
    number = request.path_params["page"]
    size = request.query_params.get("size", "thumb")
    if found is None or not number.isdigit() or size not in ("thumb", "full"):
        raise Refused(404, "Not found", "Previews are kept for 15 minutes.")
    if not 1 <= int(number) <= found.pages:
        raise Refused(404, "Not found")
    data = await images.preview_page(found, int(number) - 1, size)
    return Response(data, media_type="image/png", headers={"Cache-Control": "private, max-age=900"})
