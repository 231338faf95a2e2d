"""An outbound fax admitted: its documents, destinations and options; the messages to
queue, one per destination, or a Refusal.

In order: the destinations (at most ``max_destinations`` when the door gives one, each
passing the fax policy); the cover text; that there is something to fax; the documents
(at most ``fax.max_attachments``, none empty, none over ``fax.max_input_bytes``, each
of a kind that can be faxed, told by its bytes); then the pages (PDF and TIFF pages
counted, the cover page and a text page included) at most ``fax.max_pages``. Telling
kinds and counting pages open the documents (zip directories, PDFium, Pillow):
``messages`` does both in a thread; ``documents`` and ``count_pages`` are the blocking
parts on their own.

Where the doors differ, they say so by option: a mail's body is its cover text, and
when there is no cover page or the text is longer than a cover holds it is faxed as a
text document before the others (``text_as_document``: a mail's text is never lost);
the API's ``coverPageText`` is a field with a limit, refused when longer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gatewayd.admission.numbers import Channel, Number, destinations
from gatewayd.admission.refusals import Code, DocumentRef, Refusal
from gatewayd.config.settings import Settings, User
from gatewayd.errors import RenderError
from gatewayd.mailbox import NewAttachment, NewMessage, Party
from gatewayd.model import AttachmentType, Direction, FaxResolution, MessageType
from gatewayd.render import probe
from gatewayd.render.kinds import Kind, describe, sniff, supported

COVER_TEXT_LIMIT = 1024  # coverPageText's limit in the message store
TEXT_DOCUMENT_NAME = "message.txt"


@dataclass(frozen=True, slots=True)
class Upload:
    """A document as a sender gave it."""

    file_name: str | None
    declared: str  # the content type it came with ("" when none)
    data: bytes


@dataclass(frozen=True, slots=True)
class FaxOptions:
    resolution: FaxResolution | None = None  # None: fax.resolution
    cover_index: int | None = None  # 0: no cover page; None: 1 with fax.cover, else 0
    cover_text: str = ""
    cover_subject: str | None = None
    send_time: datetime | None = None  # None: now
    text_as_document: bool = False  # see the module's docstring


@dataclass(frozen=True, slots=True)
class FaxDocument:
    """A document that can be faxed, and what it is."""

    kind: Kind
    file_name: str | None
    data: bytes
    ref: DocumentRef | None = None  # None: the text page made of a mail's body

    def attachment(self) -> NewAttachment:
        return NewAttachment(
            AttachmentType.SOURCE_DOCUMENT,
            self.kind.value,
            data=self.data,
            file_name=self.file_name,
        )


def documents(uploads: Sequence[Upload], settings: Settings, *, office: bool) -> list[FaxDocument]:
    """The uploads with their kinds, or the first Refusal (TOO_MANY_DOCUMENTS, then per
    document EMPTY_DOCUMENT, DOCUMENT_TOO_LARGE, UNSUPPORTED_DOCUMENT). ``office``:
    LibreOffice is there to render office documents."""
    fax = settings.fax
    if len(uploads) > fax.max_attachments:
        raise Refusal(Code.TOO_MANY_DOCUMENTS, count=len(uploads), limit=fax.max_attachments)
    allowed = supported(office)
    out = []
    for index, upload in enumerate(uploads):
        ref = DocumentRef(index, upload.file_name, upload.declared)
        if not upload.data:
            raise Refusal(Code.EMPTY_DOCUMENT, document=ref)
        if len(upload.data) > fax.max_input_bytes:
            raise Refusal(
                Code.DOCUMENT_TOO_LARGE,
                document=ref,
                count=len(upload.data),
                limit=fax.max_input_bytes,
            )
        kind = sniff(upload.data, upload.declared)
        if kind is None or kind not in allowed:
            raise Refusal(Code.UNSUPPORTED_DOCUMENT, document=ref, reason=describe(allowed))
        out.append(FaxDocument(kind, upload.file_name, upload.data, ref))
    return out


def count_pages(found: Sequence[FaxDocument]) -> int:
    """At least how many pages the documents make; Refusal UNREADABLE_DOCUMENT for one
    that does not open. Blocking (PDFium, Pillow): call it in a thread."""
    pages = 0
    for document in found:
        try:
            pages += probe.pages(document.kind, document.data)
        except RenderError as exc:
            raise Refusal(
                Code.UNREADABLE_DOCUMENT, document=document.ref, reason=exc.reason
            ) from exc
    return pages


def _resolution(options: FaxOptions, settings: Settings) -> FaxResolution:
    if options.resolution is not None:
        return options.resolution
    return FaxResolution.HIGH if settings.fax.resolution == "fine" else FaxResolution.LOW


async def messages(
    uploads: Sequence[Upload],
    numbers: Sequence[Number],
    *,
    user: User,
    settings: Settings,
    options: FaxOptions,
    office: bool,
    origin: str,
    sender_email: str | None = None,
    max_destinations: int | None = None,
) -> list[NewMessage]:
    """One fax to queue per destination, or the first Refusal (in the module's order)."""
    found = destinations(numbers, Channel.FAX, settings, limit=max_destinations)
    cover = options.cover_index if options.cover_index is not None else int(settings.fax.cover)
    note = options.cover_text
    leading: list[FaxDocument] = []
    if note and options.text_as_document and (not cover or len(note) > COVER_TEXT_LIMIT):
        leading.append(FaxDocument(Kind.TEXT, TEXT_DOCUMENT_NAME, note.encode("utf-8")))
        note = ""
    elif len(note) > COVER_TEXT_LIMIT:
        raise Refusal(Code.COVER_TEXT_TOO_LONG, count=len(note), limit=COVER_TEXT_LIMIT)
    if not uploads and not leading and not (cover and note):
        raise Refusal(Code.NO_FAX_CONTENT)

    def look() -> tuple[list[FaxDocument], int]:
        checked = [*leading, *documents(uploads, settings, office=office)]
        return checked, count_pages(checked)

    checked, counted = await asyncio.to_thread(look)
    pages = (1 if cover else 0) + counted
    if pages > settings.fax.max_pages:
        raise Refusal(Code.TOO_MANY_PAGES, count=pages, limit=settings.fax.max_pages)
    attachments = tuple(d.attachment() for d in checked)
    ours = Party(phone_number=user.fax_number or None, name=user.name or None)
    return [
        NewMessage(
            account_id=user.account_id,
            extension_id=user.extension_id,
            type=MessageType.FAX,
            direction=Direction.OUTBOUND,
            from_=ours,
            to=(Party(phone_number=d.e164),),
            origin=origin,
            subject=options.cover_subject or None,
            attachments=attachments,
            fax_resolution=_resolution(options, settings),
            cover_index=cover,
            cover_page_text=note or None,
            send_time=options.send_time,
            sender_email=sender_email,
        )
        for d in found
    ]
